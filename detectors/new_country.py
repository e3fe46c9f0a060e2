"""``geo.new_country``: the key is used from a country it has not established.

A country is established once seen on enough distinct days (a probe days before an attack does
not establish it). "medium" when the client is not the key's own established one (or unknown),
"low" when it is (the owner's SDK or CLI abroad: a traveller, a new office).
Keys that already use several countries (CI fleets, multi-region services) are judged by their
country set as a whole: one more country is news for them only with a new client ("low"), and
``network.spread`` watches many at once.
"""

from __future__ import annotations

from typing import Any

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import ESTABLISHED, UNSEEN, KeyProfile

TYPE = "geo.new_country"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal a country the key has not established; silent while the key is still learning."""
    geo = ctx.geo
    if geo is None or geo.country is None or not profile.learned:
        return []
    state = profile.country_state(geo.country)
    if state == ESTABLISHED:
        return []
    own_client = bool(ctx.agent) and profile.agent_state(ctx.agent) == ESTABLISHED
    spread_key = profile.est_countries >= ctx.config.spread_key_countries
    if spread_key and (own_client or not ctx.agent):
        return []  # a fleet's new runner country: only news with a new client
    known = sorted(c for c, e in profile.countries.items() if e[2] >= 3)
    evidence: dict[str, Any] = {"country": geo.country, "known": known, "ip": event.ip}
    if state != UNSEEN:
        evidence["seen_days"] = profile.countries[geo.country][2]
    if geo.city:
        evidence["city"] = geo.city
    if geo.asn is not None:
        evidence["asn"] = geo.asn
    severity = "low" if own_client or spread_key else "medium"
    return [Signal(TYPE, severity, evidence)]  # type: ignore[arg-type]

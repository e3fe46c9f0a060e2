"""``geo.new_place`` (low): a city the key has not established, in a country it has.

Logged on its own (people move within a country); it is location evidence for escalation: a
cloud VM in another city of the victim's country that also floods is a compromise. Keys already
used from several places are judged by their country set instead: for them a new city is news
only when a new client comes with it.
"""

from __future__ import annotations

from typing import Any

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import ESTABLISHED, KeyProfile

TYPE = "geo.new_place"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal an unestablished place of an established country (single-place keys)."""
    geo, place = ctx.geo, ctx.place
    if not place or geo is None or geo.country is None or not profile.learned:
        return []
    if profile.est_places >= ctx.config.spread_key_places:
        own_client = bool(ctx.agent) and profile.agent_state(ctx.agent) == ESTABLISHED
        if own_client or not ctx.agent:
            return []  # a fleet's new runner city: news only with a new client
    if profile.place_state(place) == ESTABLISHED:
        return []
    if profile.country_state(geo.country) != ESTABLISHED:
        return []  # geo.new_country's case
    known = sorted(p for p, e in profile.places.items() if e[4] >= 3)
    evidence: dict[str, Any] = {"place": place, "country": geo.country, "known": known}
    evidence["ip"] = event.ip
    return [Signal(TYPE, "low", evidence)]

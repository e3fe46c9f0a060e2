"""``network.new_asn`` (low): a new network (autonomous system) inside a known country.

Only with an ASN database. A new country almost always comes with a new network; that case is
``geo.new_country``'s (the ASN is in its evidence), so the two never double-count one change.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import ESTABLISHED, KeyProfile

TYPE = "network.new_asn"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal an ASN the key never used, from a country it did use."""
    geo = ctx.geo
    if geo is None or geo.asn is None or not profile.learned or not profile.asns:
        return []
    if geo.asn in profile.asns or geo.country is None:
        return []
    if (
        profile.asn_state(geo.asn) == ESTABLISHED
        or profile.country_state(geo.country) != ESTABLISHED
    ):
        return []
    evidence = {
        "asn": geo.asn,
        "asn_org": geo.asn_org,
        "known": sorted(profile.asns),
        "country": geo.country,
        "ip": event.ip,
    }
    return [Signal(TYPE, "low", evidence)]

"""``network.new_asn`` (low): a new network (autonomous system) inside a known country.

Only with an ASN database. A new country almost always comes with a new network; that case is
``geo.new_country``'s (the ASN is in its evidence), so the two never double-count one change.

Keys that use many networks are judged at the level that is stable for them, the network class
(geoip.netclass): a key that runs in clouds (its hosting class established) moving to another
cloud's or region's ASN, or a key with several established ASNs (a fleet, a multi-region
service) meeting one more of a class it uses, is not news. A rented class new for the key is
``network.new_class``'s case.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import ESTABLISHED, KeyProfile
from geoip.netclass import ISP

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
    cls = geo.net_class
    if (
        cls is not None
        and profile.class_state(cls) == ESTABLISHED
        and (cls != ISP or profile.established_asns() >= ctx.config.spread_key_asns)
    ):
        return []  # judged at class level: a cloud key's new cloud ASN, a fleet's new ISP
    evidence = {
        "asn": geo.asn,
        "asn_org": geo.asn_org,
        "known": sorted(profile.asns),
        "country": geo.country,
        "ip": event.ip,
    }
    return [Signal(TYPE, "low", evidence)]

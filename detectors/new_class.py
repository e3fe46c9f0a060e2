"""``network.new_class`` (low): traffic from a hosting, VPN or Tor network, new for the key.

Stolen keys are mostly used from rented machines (cloud VMs, VPS) and VPN or Tor exits; people
use ISPs (residential, mobile, office access). A key whose established traffic never came from
such a class of network, seen from one, is location evidence at the level of
``network.new_asn`` (and pairs with abnormal volume like it, policy group ``location``). Keys
that run in clouds (CI fleets, services) have the class established and are judged at class
level: another cloud's or region's ASN is not news for them (see ``new_asn``). The classes come
from geoip/network_classes.toml (``KEYWATCH_NETWORK_CLASSES``); needs an ASN database.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile
from geoip.netclass import RENTED

TYPE = "network.new_class"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal a rented network class (hosting, vpn, tor) the key has not established."""
    geo = ctx.geo
    if geo is None or geo.net_class not in RENTED or not profile.learned:
        return []
    known = profile.known_classes()
    if not known or geo.net_class in known:
        return []  # no class history (no ASN database while it learned), or its own class
    evidence = {
        "net_class": geo.net_class,
        "asn": geo.asn,
        "asn_org": geo.asn_org,
        "known_classes": known,
        "country": geo.country,
        "ip": event.ip,
    }
    return [Signal(TYPE, "low", evidence)]

"""``network.fanout`` (low; medium at twice the limit): many more client networks in an hour.

Key sharing and distributed abuse inside the key's own countries: ``network.spread`` counts
only countries the key has not established, so a leaked key used from dozens of residential
proxies or cloud VMs in the victim's country passes it. This counts distinct client networks
(IPv4 /24, IPv6 /48) per clock hour (a 16-byte sketch in the profile) and compares them with
the key's own busiest hour (a decaying maximum learned like the volume peaks): a CI fleet or a
multi-region service uses its dozens of networks every hour and is judged at that level; an
office key uses one or two.
Alone it is evidence, not proof (a snow day sends an office home); with abnormal volume it is
high (a throttle; policy group ``sharing``): a botnet, or a client-side key gone viral. It
never revokes: compromise needs a new place or spread of countries (``policy_default.toml``).
"""

from __future__ import annotations

import math

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import DISTINCT, KeyProfile

TYPE = "network.fanout"


def limit(profile: KeyProfile, ctx: EvalContext) -> int:
    """Distinct networks per hour from which the key's fan-out is abnormal."""
    cfg = ctx.config
    return max(cfg.fanout_min_networks, math.ceil(cfg.fanout_ratio * profile.net_peak))


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal when this hour's distinct client networks (this event's included) reach the limit."""
    if DISTINCT[profile.net_bits + 1] < ctx.config.fanout_min_networks:  # the common case
        return []
    geo = ctx.geo
    if geo is None or geo.network is None or ctx.late or not profile.learned:
        return []
    bits = profile.net_bits
    if not profile.hour_has_network(geo.network):
        bits += 1
    n, top = DISTINCT[bits], limit(profile, ctx)
    if n < top:
        return []
    evidence = {
        "distinct_networks": n,
        "usual_max": round(profile.net_peak, 1),
        "limit": top,
        "network": geo.network,
        "country": geo.country,
        "ip": event.ip,
    }
    return [Signal(TYPE, "medium" if n >= 2 * top else "low", evidence)]

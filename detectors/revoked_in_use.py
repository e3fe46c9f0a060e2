"""``auth.revoked_in_use`` (medium): a key the gateway refuses as revoked or expired is still tried.

A revoked or expired key that keeps arriving means someone still holds its secret: a leaked
copy being tested, a forgotten deployment, or the thief the revocation was for. Revoking again
is moot, so the policy notifies; the incident counts the attempts and each alert names the
client network (IP/24, IPv6 /48), so attempts from several networks are visible at a glance.
The analyzer does not profile refused requests: a dead key's callers are not its usage.

Severity rises with the spread of the secret: the incident keeps a 64-bit sketch of the client
networks its attempts came from (``remember``), and from ``revoked_networks_high`` distinct
networks within one incident the signal is high (paged): one forgotten deployment tries from one
network, a leaked secret from many. The action that high maps to does nothing to a dead key (the
key store ignores a throttle of a revoked or expired key); the severity is for people.
"""

from __future__ import annotations

import ipaddress
import zlib
from functools import lru_cache

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile

TYPE = "auth.revoked_in_use"

# Verdicts for a known key the gateway refused because its secret no longer opens anything.
DEAD_KEY = frozenset({"revoked", "expired"})
# Verdicts for which the request was not served: never profiled as the key's usage.
REFUSED = DEAD_KEY | frozenset({"invalid", "missing"})


@lru_cache(maxsize=1 << 14)
def network_of(ip: str) -> str:
    """The client network of ``ip``: its IPv4 /24 or IPv6 /48 (``ip`` itself if unparsable)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def _bit(network: str) -> int:
    return 1 << (zlib.crc32(network.encode()) & 63)


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal every refused attempt with a dead key (the incident keeps one alert)."""
    if event.auth not in DEAD_KEY:
        return []
    network = network_of(event.ip)
    inc = profile.incidents.get(TYPE)
    seen = inc.nets if inc is not None and event.ts - inc.last_seen <= ctx.config.cooldown_s else 0
    networks = (seen | _bit(network)).bit_count()
    severity = "high" if networks >= ctx.config.revoked_networks_high else "medium"
    path = event.path.split("?", 1)[0]  # never the query: it may hold a key
    evidence = {"auth": event.auth, "network": network, "ip": event.ip,
                "status": event.status, "method": event.method, "path": path,
                "gateway": event.gateway, "networks": networks}  # fmt: skip
    return [Signal(TYPE, severity, evidence)]  # type: ignore[arg-type]


def remember(profile: KeyProfile, event: AccessEvent) -> None:
    """Add the event's client network to its (just recorded) incident's sketch."""
    inc = profile.incidents.get(TYPE)
    if inc is not None:
        inc.nets |= _bit(network_of(event.ip))

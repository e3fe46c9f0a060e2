"""Client IP addresses: validated, normalised and cached (gateways repeat the same IPs a lot).

``client_ip`` takes one address, optionally with a port (``1.2.3.4:80``, ``[2001:db8::1]:443``).
``forwarded_client`` picks the client from a peer address and an ``X-Forwarded-For`` list. Each
proxy appends the address it saw, and everything left of what our own proxies appended is
whatever the client chose to send (ref: MDN, X-Forwarded-For, "Selecting an IP address": use
the right-most entry not added by a trusted proxy). So the list is read from the right, past the
trusted proxies, and the first untrusted entry is the client. Which proxies are trusted is
``KEYWATCH_TRUSTED_PROXIES`` (see ``TrustedProxies``): by default, private and loopback
addresses; or a number of hops (as Envoy's ``xff_num_trusted_hops``); or a list of networks.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Final

from worker.ingest.model import Rejected

_CACHE_MAX: Final = 65_536
_cache: dict[str, str | None] = {}  # raw text -> normalised address, None when invalid
_public: dict[str, bool] = {}
_MAX_TEXT: Final = 64  # the longest IPv6 text with a zone and port fits easily


def normalise(text: str) -> str | None:
    """The canonical form of an IP address (port stripped), or None when it is not one."""
    hit = _cache.get(text)
    if hit is not None or text in _cache:
        return hit
    result = _normalise(text) if len(text) <= _MAX_TEXT else None
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()  # crude bound; a hot working set refills within a batch
    _cache[text] = result
    return result


def _normalise(text: str) -> str | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        end = text.find("]")
        text = text[1:end] if end > 0 else ""
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)  # ::ffff:1.2.3.4 is the IPv4 client
    return str(addr)


def known_ips() -> dict[str, str | None]:
    """The cache ``client_ip`` reads first (text -> normalised address; None: invalid); it is
    cleared in place, so a caller may hold it."""
    return _cache


def is_public(ip: str) -> bool:
    """True for globally routable addresses (a normalised address is expected)."""
    hit = _public.get(ip)
    if hit is None:
        hit = ipaddress.ip_address(ip).is_global
        if len(_public) >= _CACHE_MAX:
            _public.clear()
        _public[ip] = hit
    return hit


def client_ip(value: Any, field: str = "ip") -> str:
    """A required client IP; raises ``Rejected`` (missing_ip / invalid_ip)."""
    hit = _cache.get(value) if value.__class__ is str else None
    if hit is not None:
        return hit
    if value is None or value == "":
        raise Rejected("missing_ip", f"no {field}")
    if not isinstance(value, str):
        raise Rejected("invalid_ip", f"{field} is a {type(value).__name__}")
    ip = normalise(value)
    if ip is None:
        raise Rejected("invalid_ip", f"{field} is not an IP address")
    return ip


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """Which addresses are our own proxies: a hop count, or networks (None: private ones)."""

    hops: int | None = None
    networks: tuple[Network, ...] | None = None

    def trusts(self, ip: str) -> bool:
        """True when ``ip`` (normalised) is one of our proxies (network modes only)."""
        if self.networks is None:
            return not is_public(ip)
        addr = ipaddress.ip_address(ip)
        return any(addr in net for net in self.networks)


def parse_trusted(spec: str) -> TrustedProxies:
    """``""``/``private``, a hop count (``2``), or networks (``10.0.0.0/8,192.0.2.7``)."""
    spec = spec.strip()
    if spec in ("", "private"):
        return TrustedProxies()
    if spec.isdigit():
        return TrustedProxies(hops=int(spec))
    try:
        nets = tuple(ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(","))
    except ValueError:
        raise ValueError("must be 'private', a number of hops or a list of networks") from None
    return TrustedProxies(networks=nets)


_trusted = TrustedProxies()


def configure(trusted: TrustedProxies) -> None:
    """Set the process's trusted proxies (parsers are plain functions called per event)."""
    global _trusted
    _trusted = trusted


def forwarded_client(
    peer: str | None, forwarded: Any, trusted: TrustedProxies | None = None
) -> str | None:
    """The client behind our trusted proxies: ``peer`` (normalised) unless it is one of them;
    None when neither the peer nor the list gives a valid address. ``trusted``: the process's
    setting (``configure``) unless given (the gateway passes its own)."""
    trusted = _trusted if trusted is None else trusted
    parts = forwarded.split(",", 32)[-32:] if isinstance(forwarded, str) and forwarded else []
    if trusted.hops is not None:
        if trusted.hops == 0 or not parts:
            return peer
        return normalise(parts[max(0, len(parts) - trusted.hops)].strip()) or peer
    if peer is not None and not trusted.trusts(peer):
        return peer
    leftmost = None
    for part in reversed(parts):
        ip = normalise(part.strip())
        if ip is None:
            break  # garbage: nothing further left can be trusted to be an address we saw
        if not trusted.trusts(ip):
            return ip
        leftmost = ip
    return leftmost or peer

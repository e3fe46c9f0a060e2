"""Client IP addresses: validated, normalised and cached (gateways repeat the same IPs a lot).

``client_ip`` takes one address, optionally with a port (``1.2.3.4:80``, ``[2001:db8::1]:443``).
``forwarded_client`` takes an ``X-Forwarded-For`` list and returns its left-most valid *public*
entry: the left-most entry is the original client as each proxy appends the address it saw
(ref: MDN, X-Forwarded-For). It can be forged by the client, so a format uses it only when the
peer address is a private/proxy address; private entries (internal hops) are skipped.
"""

from __future__ import annotations

import ipaddress
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


def forwarded_client(value: Any) -> str | None:
    """The left-most valid public address of an X-Forwarded-For value, None when there is none."""
    if not isinstance(value, str) or not value:
        return None
    for part in value.split(",", 16):
        ip = normalise(part.strip())
        if ip is not None and is_public(ip):
            return ip
    return None

"""One human sentence per alert, e.g. "Key 9f2a1c3e used from RU (new) at 38x its usual rate"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from detectors.model import Signal


def _new_country(e: dict[str, Any]) -> str:
    if e.get("seen_days"):
        return f"from {e.get('country')} (seen on {e.get('seen_days')} day(s), not established)"
    return f"from {e.get('country')} (new)"


def _new_place(e: dict[str, Any]) -> str:
    return f"from {str(e.get('place', '?')).rstrip('/')} (new city)"


def _spread(e: dict[str, Any]) -> str:
    return f"from {e.get('countries_this_hour')} new countries within an hour"


def _new_agent(e: dict[str, Any]) -> str:
    return f"by a new client ({e.get('agent')})"


def _travel(e: dict[str, Any]) -> str:
    to = str(e.get("to", {}).get("place", "?")).rstrip("/")
    km, secs, kmh = e.get("distance_km"), e.get("elapsed_s"), e.get("speed_kmh")
    return f"in {to}, {km} km away after {secs} s ({kmh} km/h)"


def _spike(e: dict[str, Any]) -> str:
    ratio = e.get("ratio")
    if ratio:
        return f"at {ratio:g}x its usual peak"
    return f"at {e.get('observed_per_hour')} requests/hour"


def _endpoint_shift(e: dict[str, Any]) -> str:
    share, usual = e.get("share_this_hour", 0), e.get("usual_share", 0)
    return (
        f"mostly on {e.get('endpoint')} ({100 * share:.0f}% of this hour, "
        f"usually {100 * usual:.1f}%)"
    )


def _off_hours(e: dict[str, Any]) -> str:
    return f"at {e.get('hour_utc'):02d}:00 UTC, outside its usual hours"


def _new_asn(e: dict[str, Any]) -> str:
    return f"via AS{e.get('asn')} {e.get('asn_org') or ''} (new network)".replace("  ", " ")


def _new_class(e: dict[str, Any]) -> str:
    org = e.get("asn_org") or ""
    return f"from a {e.get('net_class')} network, AS{e.get('asn')} {org} (new class)".replace(
        "  ", " "
    )


def _fanout(e: dict[str, Any]) -> str:
    return (
        f"from {e.get('distinct_networks')} client networks within an hour "
        f"(usually at most {e.get('usual_max')})"
    )


def _key_in_query(e: dict[str, Any]) -> str:
    return "with the key in the query string"


def _second_key(e: dict[str, Any]) -> str:
    return "with a second, different key in the same request"


def _revoked_in_use(e: dict[str, Any]) -> str:
    spread = e.get("networks") or 0
    more = f" ({spread} client networks so far)" if spread > 1 else ""
    return f"while {e.get('auth')} (refused), from {e.get('network')}{more}"


_PHRASES: dict[str, Callable[[dict[str, Any]], str]] = {
    "client.new_user_agent": _new_agent,
    "geo.new_country": _new_country,
    "geo.new_place": _new_place,
    "network.spread": _spread,
    "geo.impossible_travel": _travel,
    "network.new_asn": _new_asn,
    "network.new_class": _new_class,
    "network.fanout": _fanout,
    "time.off_hours": _off_hours,
    "usage.spike": _spike,
    "usage.endpoint_shift": _endpoint_shift,
    "transport.key_in_query": _key_in_query,
    "transport.second_key": _second_key,
    "auth.revoked_in_use": _revoked_in_use,
}


def phrase(signal: Signal) -> str:
    """The part of a summary sentence that describes one signal."""
    if "open_since" in signal.evidence:
        return str(signal.evidence.get("summary") or f"({signal.type})")
    describe = _PHRASES.get(signal.type)
    return describe(signal.evidence) if describe is not None else f"({signal.type})"


def summarize(key_id: str, signals: Sequence[Signal]) -> str:
    """Describe every open signal in one sentence, the freshest evidence first."""
    return f"Key {key_id} used " + " ".join(phrase(s) for s in reversed(signals))

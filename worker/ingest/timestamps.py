"""Event timestamps to epoch seconds (UTC): ISO 8601, epoch s/ms/µs/ns, numeric strings, CLF.

Values outside 2000-01-01..2100-01-01 are rejected (``timestamp_out_of_range``): a gateway clock
or a unit mix-up that far off would poison the per-key baselines.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final

from worker.ingest.model import Rejected

MIN_TS: Final = 946_684_800.0  # 2000-01-01T00:00:00Z
MAX_TS: Final = 4_102_444_800.0  # 2100-01-01T00:00:00Z
_CLF: Final = "%d/%b/%Y:%H:%M:%S %z"  # AWS $context.requestTime: 21/Nov/2026:03:04:05 +0000
_MAX_TEXT: Final = 64
# Epoch unit from magnitude: 2100 is 4.1e9 s, so anything above 1e11 cannot be seconds.
_UNITS: Final = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6), (1e20, 1e9))


MIN_MS: Final = int(MIN_TS * 1000)  # epoch milliseconds in range: the common Kong case
MAX_MS: Final = int(MAX_TS * 1000)
_MIN_MS, _MAX_MS = MIN_MS, MAX_MS
_CACHE_MAX: Final = 100_000
_MILLIS: Final = {f"{i:03d}": i / 1000 for i in range(1000)}
_seconds: dict[str, float] = {}  # "YYYY-MM-DDTHH:MM:SS" -> epoch: a stream repeats its seconds


def parse_ts(value: Any) -> float:
    """Epoch seconds from a JSON value; raises ``Rejected`` with a reason on anything unusable."""
    cls = value.__class__
    if cls is str:
        if len(value) == 24 and value[23] == "Z" and value[19] == ".":
            base = _seconds.get(value[:19])
            frac = _MILLIS.get(value[20:23])
            if base is not None and frac is not None:
                return base + frac
            return _fast_iso(value)
        return _from_text(value)
    if cls is int:
        if _MIN_MS <= value < _MAX_MS:  # the common case: epoch milliseconds
            return float(value / 1000)
        return _from_number(value)
    if cls is float:
        return _from_number(value)
    if isinstance(value, str):
        return _from_text(value)
    if value is None:
        raise Rejected("missing_timestamp", "no timestamp")
    raise Rejected("invalid_timestamp", f"timestamp is a {type(value).__name__}")


def _fast_iso(text: str) -> float:
    """``YYYY-MM-DDTHH:MM:SS.fffZ`` (the commonest form) on a cache miss: fill the cache."""
    frac = _MILLIS.get(text[20:23])
    if frac is None:
        raise Rejected("invalid_timestamp", "not ISO 8601")
    base = _seconds.get(text[:19])
    if base is None:
        base = _from_text(text[:19] + "Z")
        if len(_seconds) >= _CACHE_MAX:
            _seconds.clear()
        _seconds[text[:19]] = base
    return base + frac


def _from_number(value: float) -> float:
    if not math.isfinite(value):
        raise Rejected("invalid_timestamp", "timestamp is not finite")
    if value < 0:
        raise Rejected("invalid_timestamp", "negative timestamp")
    for limit, div in _UNITS:
        if value < limit:
            return _in_range(value / div)
    raise Rejected("timestamp_out_of_range", "timestamp beyond year 2100")


def _from_text(text: str) -> float:
    if not text or len(text) > _MAX_TEXT:
        raise Rejected("invalid_timestamp", "empty or overlong timestamp text")
    first = text[0]
    if first.isdigit() and (len(text) < 5 or text[4] != "-"):
        if "/" in text:
            return _from_clf(text)
        try:
            return _from_number(float(text))
        except ValueError:
            raise Rejected("invalid_timestamp", "unparseable timestamp text") from None
    try:
        ts = _aware(datetime.fromisoformat(text)).timestamp()
    except (ValueError, OverflowError):
        raise Rejected("invalid_timestamp", "not ISO 8601") from None
    return _in_range(ts)


def _from_clf(text: str) -> float:
    try:
        ts = datetime.strptime(text, _CLF).timestamp()
    except (ValueError, OverflowError):
        raise Rejected("invalid_timestamp", "not a CLF timestamp") from None
    return _in_range(ts)


def _aware(dt: datetime) -> datetime:
    """Naive times are UTC: gateways log in UTC unless they say otherwise."""
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _in_range(ts: float) -> float:
    if MIN_TS <= ts < MAX_TS:
        return ts
    raise Rejected("timestamp_out_of_range", "timestamp outside 2000..2100")

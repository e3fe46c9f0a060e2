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


def parse_ts(value: Any) -> float:
    """Epoch seconds from a JSON value; raises ``Rejected`` with a reason on anything unusable."""
    if value.__class__ is int or value.__class__ is float:
        return _from_number(value)
    if isinstance(value, str):
        return _from_text(value)
    if value is None:
        raise Rejected("missing_timestamp", "no timestamp")
    raise Rejected("invalid_timestamp", f"timestamp is a {type(value).__name__}")


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

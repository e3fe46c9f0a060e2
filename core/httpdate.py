"""The one ``Retry-After`` parser (RFC 9110 10.2.3): delta-seconds or an HTTP date."""

from __future__ import annotations

import email.utils
import math
import time


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (never negative), or None when absent or
    unreadable. ``now``: epoch seconds an HTTP date is measured from (default: the clock)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

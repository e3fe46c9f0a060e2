"""Rate limits as key metadata: ``N/second|minute|hour|day`` strings, parsed into windows.

Stored on the key row as a list of normalised strings (``["100/minute", "5000/day"]``) and
published in the Redis view, so any gateway (keywatch's own or one reading Redis) applies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from core.errors import KeyStoreError

UNITS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_SPEC: Final = re.compile(r"^\s*(\d{1,9})\s*/\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``limit`` requests in any sliding window of ``window_s`` seconds."""

    limit: int
    window_s: int

    @property
    def spec(self) -> str:
        """The normalised text form, e.g. ``100/minute``."""
        unit = next(name for name, secs in UNITS.items() if secs == self.window_s)
        return f"{self.limit}/{unit}"


def parse_limit(text: str) -> RateLimit:
    """Parse ``N/unit``; raises KeyStoreError (a user error) on anything else."""
    m = _SPEC.match(text)
    if not m:
        raise KeyStoreError(f"bad rate limit {text!r}: expected N/second|minute|hour|day")
    return RateLimit(int(m.group(1)), UNITS[m.group(2).lower()])


def parse_limits(texts: Iterable[str]) -> tuple[RateLimit, ...]:
    """Parse several specs; one limit per window (the last one given wins), shortest first."""
    by_window = {lim.window_s: lim for lim in map(parse_limit, texts)}
    return tuple(sorted(by_window.values(), key=lambda lim: lim.window_s))


def normalise(texts: Iterable[str]) -> list[str]:
    """The stored form of ``texts``: validated, one per window, shortest window first."""
    return [lim.spec for lim in parse_limits(texts)]

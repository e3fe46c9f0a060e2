"""Rate-limit specs: ``N/second|minute|hour|day``."""

from __future__ import annotations

import pytest

from core.errors import KeyStoreError
from worker.keystore.ratelimits import normalise, parse_limit


@pytest.mark.parametrize(
    "text, limit, window",
    [("10/second", 10, 1), ("100/minute", 100, 60), ("5 / Hour", 5, 3600),
     ("1000/days", 1000, 86400), ("0/minute", 0, 60)],
)  # fmt: skip
def test_parse(text: str, limit: int, window: int) -> None:
    lim = parse_limit(text)
    assert (lim.limit, lim.window_s) == (limit, window)


@pytest.mark.parametrize("text", ["10", "10/min", "-1/second", "x/day", "10/week", ""])
def test_bad(text: str) -> None:
    with pytest.raises(KeyStoreError, match="bad rate limit"):
        parse_limit(text)


def test_normalise_one_per_window_shortest_first() -> None:
    assert normalise(["1000/day", "10/second", "20/second"]) == ["20/second", "1000/day"]

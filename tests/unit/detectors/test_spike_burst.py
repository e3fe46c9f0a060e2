"""``usage.spike``'s burst test: ten times the key's busiest minute, on one endpoint, at work.

Each case trains a key on weekday office traffic (09:00-17:00 UTC, its own endpoint mix, and
optionally a daily pagination of 60 requests in ten seconds), then sends one burst and checks
the highest severity of the volume signals it raised: "medium" (notify) with the "burst"
window, or "low" (logged) / nothing when the burst could be the key's own work.
"""

from __future__ import annotations

import itertools

import pytest

from detectors import usage_spike
from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, KeyContext
from detectors.profile import KeyProfile
from tests.unit.detectors.conftest import DAY, HOUR, LONDON, T0

OFFICE = {"/v1/users": 6, "/v1/orders": 3, "/v1/search": 1}  # weights of the key's own calls
KEY = KeyContext("k1", "acme")
WORKDAY = T0 + 9 * DAY  # Wednesday of the second week


def _cycle(mix: dict[str, int]) -> itertools.cycle[str]:
    return itertools.cycle([p for p, w in mix.items() for _ in range(w)])


def _trained(paginates: bool) -> tuple[Analyzer, KeyProfile]:
    """A key used on weekdays 09:00-17:00 UTC, 40 requests an hour spread evenly."""
    analyzer, prof = Analyzer(None), KeyProfile()
    paths = _cycle(OFFICE)
    for day in range(9):
        if day % 7 >= 5:
            continue
        for hour in range(9, 17):
            start = T0 + day * DAY + hour * HOUR
            evs = [
                AccessEvent(start + i * 90.0, "k1", LONDON, "GET", next(paths)) for i in range(40)
            ]
            if paginates and hour == 14:  # a developer paging through orders
                evs += [
                    AccessEvent(start + 1800 + i / 6, "k1", LONDON, "GET", "/v1/orders?page=2")
                    for i in range(60)
                ]
                evs.sort(key=lambda e: e.ts)
            prof, _ = analyzer.analyze(KEY, prof, evs, evs[-1].ts)
    return analyzer, prof


def _volume(
    paginates: bool, at_hour: float, per_min: int, seconds: float, mix: dict[str, int]
) -> tuple[str | None, list[str]]:
    """The highest severity of the burst's volume signals and their windows."""
    analyzer, prof = _trained(paginates)
    assert prof.learned
    start, paths = WORKDAY + at_hour * HOUR, _cycle(mix)
    n = int(per_min * seconds / 60)
    burst = [
        AccessEvent(start + i * seconds / n, "k1", LONDON, "GET", next(paths)) for i in range(n)
    ]
    worst: str | None = None
    windows: list[str] = []
    for i in range(0, len(burst), 50):  # batches as the worker hands them over
        chunk = burst[i : i + 50]
        prof, alerts = analyzer.analyze(KEY, prof, chunk, chunk[-1].ts)
        for a in alerts:
            for s in a.signals:
                if s.type == usage_spike.TYPE and "windows" in s.evidence:
                    windows += s.evidence["windows"]
                    if worst is None or s.severity == "medium":
                        worst = s.severity
    return worst, windows


@pytest.mark.parametrize(
    "paginates, at_hour, per_min, seconds, mix, expected",
    [
        # A duty-cycled harvest's first burst on the key's busiest endpoint (60% of its mix),
        # in working hours: a first run of a job syncing that endpoint then looks the same and
        # is notified once (its volume is learned when the incident ends).
        (False, 10.5, 600, 120, {"/v1/users": 1}, "medium"),
        # ... with some of the key's usual calls mixed in (85% on the harvested endpoint).
        (False, 10.5, 600, 120, {"/v1/users": 17, "/v1/orders": 2, "/v1/search": 1}, "medium"),
        # ... on its second endpoint (30% of its mix).
        (False, 10.5, 400, 120, {"/v1/orders": 1}, "medium"),
        # A job's first run at night, outside the key's hours: left to the other tests.
        (False, 2.5, 600, 120, {"/v1/users": 1}, "low"),
        # ... running on into its second hour (the first one is now an hour the key was active).
        (False, 2.95, 600, 600, {"/v1/users": 1}, "low"),
        # A backfill running the application's usual calls at volume: follows the mix.
        (False, 10.5, 600, 120, OFFICE, "low"),
        # A launch: the key's own traffic at five times its rate, the usual mix.
        (False, 10.5, 4, 3600, OFFICE, None),
        # A pagination burst (60 requests in ten seconds, one endpoint): under the floor.
        (False, 10.5, 360, 10, {"/v1/orders": 1}, "low"),
        # A key whose developer pages 60 a minute: 400 a minute is within ten times that.
        (True, 10.5, 400, 120, {"/v1/users": 1}, "low"),
        # ... 800 a minute on one endpoint is not.
        (True, 10.5, 800, 120, {"/v1/users": 1}, "medium"),
    ],
    ids=[
        "harvest-busiest-endpoint",
        "harvest-with-usual-calls",
        "harvest-second-endpoint",
        "job-first-run-at-night",
        "job-first-run-at-night-second-hour",
        "backfill-usual-mix",
        "launch-usual-mix",
        "pagination-burst",
        "within-ten-times-a-paginating-key",
        "over-ten-times-a-paginating-key",
    ],
)
def test_burst(  # type: ignore[no-untyped-def]
    paginates: bool, at_hour: float, per_min: int, seconds: float, mix, expected: str | None
) -> None:
    worst, windows = _volume(paginates, at_hour, per_min, seconds, mix)
    assert worst == expected
    assert ("burst" in windows) == (expected == "medium")


def test_burst_threshold_is_derived_not_stored() -> None:
    """The burst threshold follows the key's busiest minute and survives a round trip."""
    _, quiet = _trained(False)
    _, paging = _trained(True)
    assert quiet.tb == 100  # the floor: ten times the minimum busiest minute is below it
    assert paging.tb >= 10 * 55
    again = KeyProfile.from_bytes(paging.to_bytes())
    assert again.tb == paging.tb

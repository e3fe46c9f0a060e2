"""``usage.endpoint_shift``: abnormal volume on an endpoint the key rarely uses.

Each case trains a key on a week of weekday office traffic with its own endpoint mix, then sends
one burst (two minutes at ``per_min`` requests a minute, or a slow trickle) and checks what the
analyzer signals for it: harvests are signalled, the key's own work at volume is not.
"""

from __future__ import annotations

import itertools

import pytest

from detectors import endpoint_shift
from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, KeyContext
from detectors.profile import MAX_PATHS, OTHER_PATH, KeyProfile, endpoint_key
from tests.unit.detectors.conftest import DAY, HOUR, LONDON, T0

OFFICE = {"/v1/users": 6, "/v1/orders": 3, "/v1/search": 1}  # weights of the key's own calls
FLEET = {f"/v1/e{i}": 1 for i in range(7)}  # a service calling 7 endpoints about equally
KEY = KeyContext("k1", "acme")
BURST_AT = T0 + 9 * DAY + 10 * HOUR + 30  # Wednesday of the second week, 10:00:30 UTC


def _cycle(mix: dict[str, int]) -> itertools.cycle[str]:
    return itertools.cycle([p for p, w in mix.items() for _ in range(w)])


def _trained(mix: dict[str, int], per_hour: int = 40, days: int = 9) -> tuple[Analyzer, KeyProfile]:
    """A key used on weekdays 09:00-17:00 UTC, ``per_hour`` requests an hour spread evenly."""
    analyzer, prof = Analyzer(None), KeyProfile()
    paths = _cycle(mix)
    for day in range(9 - days, 9):
        if day % 7 >= 5:
            continue
        for hour in range(9, 17):
            start = T0 + day * DAY + hour * HOUR
            evs = [
                AccessEvent(start + i * HOUR / per_hour, "k1", LONDON, "GET", next(paths))
                for i in range(per_hour)
            ]
            prof, _ = analyzer.analyze(KEY, prof, evs, evs[-1].ts)
    return analyzer, prof


def _burst(per_min: int, seconds: float, paths: itertools.cycle[str]) -> list[AccessEvent]:
    n = int(per_min * seconds / 60)
    return [
        AccessEvent(BURST_AT + i * seconds / n, "k1", LONDON, "GET", next(paths)) for i in range(n)
    ]


def _signals(mix: dict[str, int], burst: list[AccessEvent], learned: bool = True) -> list[dict]:  # type: ignore[type-arg]
    analyzer, prof = _trained(mix, days=9 if learned else 1)
    assert prof.learned == learned
    found = []
    for i in range(0, len(burst), 50):  # batches as the worker hands them over
        chunk = burst[i : i + 50]
        prof, alerts = analyzer.analyze(KEY, prof, chunk, chunk[-1].ts)
        for a in alerts:
            found += [s.evidence for s in a.signals if s.type == endpoint_shift.TYPE]
    return found


@pytest.mark.parametrize(
    "mix, per_min, seconds, burst_paths, expected",
    [
        # A duty-cycled harvest's first burst on an endpoint the key never called.
        (OFFICE, 600, 120, {"/v1/files": 1}, "/v1/files"),
        # ... with record ids and a query string: the endpoint is the first two segments.
        (OFFICE, 600, 120, {"/v1/files/4711?page=2": 1}, "/v1/files"),
        # On one it calls rarely (10% of its requests), with some of its usual calls mixed in.
        (OFFICE, 400, 120, {"/v1/search": 9, "/v1/users": 1}, "/v1/search"),
        # Unknown endpoints of a key whose table is full count as "*": still a harvest.
        (FLEET, 600, 120, {"/v1/zz": 1}, "(other endpoints)"),
        # A batch syncing the key's own busiest endpoint: more of its usual work.
        (OFFICE, 600, 120, {"/v1/users": 1}, None),
        # A backfill running the application's usual calls at volume.
        (OFFICE, 600, 120, OFFICE, None),
        # A new endpoint at ordinary volume is a new feature, not a flood.
        (OFFICE, 3, 120, {"/v1/files": 1}, None),
        # A key calling 7 endpoints about equally, a batch paging one of them (14% of its mix,
        # here 95%): signalled; a harvest would look the same.
        (FLEET, 600, 120, {"/v1/e3": 19, "/v1/e1": 1}, "/v1/e3"),
    ],
    ids=[
        "harvest-new-endpoint",
        "harvest-with-ids",
        "harvest-rare-endpoint",
        "harvest-unknown-on-full-table",
        "batch-on-busiest-endpoint",
        "backfill-usual-mix",
        "new-feature-low-volume",
        "batch-on-minor-endpoint-of-spread-key",
    ],
)
def test_endpoint_shift(  # type: ignore[no-untyped-def]
    mix, per_min: int, seconds: float, burst_paths: dict[str, int], expected: str | None
) -> None:
    found = _signals(mix, _burst(per_min, seconds, _cycle(burst_paths)))
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1  # once per hour, not per request
        assert found[0]["endpoint"] == expected
        assert found[0]["share_this_hour"] >= 0.6 > 4 * found[0]["usual_share"] - 0.6


def test_silent_while_the_key_learns() -> None:
    assert _signals(OFFICE, _burst(600, 120, _cycle({"/v1/files": 1})), learned=False) == []


def test_the_harvest_hour_is_not_learned_into_the_mix() -> None:
    """An hour with a young volume incident does not move the key's mix."""
    analyzer, prof = _trained(OFFICE)
    before = {p: e[0] + e[1] for p, e in prof.paths.items()}  # the last hour closes too
    burst = _burst(600, 120, _cycle({"/v1/files": 1}))
    prof, _ = analyzer.analyze(KEY, prof, burst, burst[-1].ts)
    later = AccessEvent(BURST_AT + 2 * HOUR, "k1", LONDON, "GET", "/v1/users")
    prof, _ = analyzer.analyze(KEY, prof, [later], later.ts)
    assert {p: e[0] for p, e in prof.paths.items() if p in before} == before
    assert prof.paths[endpoint_key("/v1/files")][0] == 0


def test_a_benign_verdict_makes_the_endpoint_common() -> None:
    _, prof = _trained(OFFICE)
    files = endpoint_key("/v1/files")
    prof.paths[files] = [0, 0]
    assert prof.learn_feedback(endpoint_shift.TYPE, {"endpoint": "/v1/files"}, BURST_AT)
    total = sum(e[0] for e in prof.paths.values())
    assert prof.paths[files][0] * 2 >= total


def test_table_is_bounded_and_round_trips() -> None:
    prof = KeyProfile()
    for i in range(50):
        prof.count_path(endpoint_key(f"/v1/endpoint-{i}"))
    assert len(prof.paths) == MAX_PATHS and prof.paths[OTHER_PATH][1] == 50 - (MAX_PATHS - 1)
    again = KeyProfile.from_bytes(prof.to_bytes())
    assert again.paths == prof.paths


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/v1/users", "/v1/users"),
        ("/v1/users/4711", "/v1/users"),
        ("/v1/users?page=2&api_key=x", "/v1/users"),
        ("/v1", "/v1"),
        ("/", "/"),
        ("", ""),
        ("/v1/" + "x" * 60, "/v1/" + "x" * 44),
        ("/v1/sk_live_" + "a" * 43 + "/x", None),  # a key in a path is never kept whole
    ],
)
def test_endpoint_of(path: str, expected: str | None) -> None:
    got = endpoint_shift.endpoint_of(path)
    if expected is None:
        assert "a" * 20 not in got and got.startswith("/v1/")
    else:
        assert got == expected

"""Analyzer end to end on small synthetic histories."""

from __future__ import annotations

import random
from collections.abc import Callable

from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, KeyContext
from detectors.profile import KeyProfile
from geoip.resolver import GeoResolver
from tests.unit.detectors.conftest import DAY, HOUR, LONDON, MOSCOW, PARIS, SYDNEY, T0

MONDAY = T0 + 7 * DAY
LIVE, TEST = KeyContext("k1", "acme"), KeyContext("k1", "acme", environment="test")


def compromise() -> list[AccessEvent]:
    """From Moscow at 02:00 UTC, at 20 requests a minute for 15 minutes."""
    return [AccessEvent(MONDAY + 2 * HOUR + i * 3.0, "k1", MOSCOW) for i in range(300)]


def test_compromise_is_critical_and_revoked(
    geo: GeoResolver, trained: Callable[[], KeyProfile]
) -> None:
    """A new country alone notifies at once; the flood that follows is the evidence to revoke."""
    _, alerts = Analyzer(geo).analyze(LIVE, trained(), compromise(), MONDAY + 3 * HOUR)
    assert 2 <= len(alerts) <= 4
    first = alerts[0]
    assert (first.severity, first.action) == ("medium", "notify")
    assert {s.type for s in first.signals} == {"geo.new_country", "time.off_hours"}
    assert first.summary.startswith("Key k1 used ") and "RU (new)" in first.summary
    assert first.to_dict()["ts"] == "2026-11-09T02:00:00.000Z"
    revoke = next(a for a in alerts if a.action == "revoke")
    assert revoke.severity == "critical" and revoke.ts - first.ts <= 300  # within 5 minutes
    assert {"geo.new_country", "usage.spike"} <= {s.type for s in revoke.signals}
    assert any("location + volume" in r for r in revoke.extra["reasons"])  # type: ignore[attr-defined]


def test_traveller_is_never_revoked(geo: GeoResolver, trained: Callable[[], KeyProfile]) -> None:
    """The owner's own client in Paris two days later, working late at the usual rate."""
    prof = trained()
    prof.agents["acme-sdk"] = [0, 3]
    trip = [
        AccessEvent(MONDAY + 2 * DAY + h * HOUR + i * 120.0, "k1", PARIS, user_agent="acme-sdk/2")
        for h in range(14, 23)
        for i in range(30)
    ]
    _, alerts = Analyzer(geo).analyze(LIVE, prof, trip, MONDAY + 3 * DAY)
    assert alerts and all(a.action == "log" for a in alerts)


def test_test_keys_are_never_revoked(geo: GeoResolver, trained: Callable[[], KeyProfile]) -> None:
    _, alerts = Analyzer(geo).analyze(TEST, trained(), compromise(), MONDAY + 3 * HOUR)
    assert alerts and all(a.action != "revoke" for a in alerts)


def test_ordinary_day_raises_nothing(geo: GeoResolver, trained: Callable[[], KeyProfile]) -> None:
    day = [
        AccessEvent(MONDAY + h * HOUR + i * 120.0, "k1", LONDON)
        for h in range(8, 18)
        for i in range(30)
    ]
    prof, alerts = Analyzer(geo).analyze(LIVE, trained(), day, MONDAY + DAY)
    assert alerts == [] and prof.learned


def test_batch_order_and_reprocessing_give_the_same_alerts(
    geo: GeoResolver, trained: Callable[[], KeyProfile]
) -> None:
    events = compromise()
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    a = Analyzer(geo).analyze(LIVE, trained(), events, MONDAY + 3 * HOUR)[1]
    b = Analyzer(geo).analyze(LIVE, trained(), shuffled, MONDAY + 3 * HOUR)[1]
    assert [x.id for x in a] == [x.id for x in b] and len({x.id for x in a}) == len(a)


def test_late_batch_neither_travels_nor_touches_the_baseline(
    geo: GeoResolver, trained: Callable[[], KeyProfile]
) -> None:
    analyzer = Analyzer(geo)
    prof, _ = analyzer.analyze(
        LIVE, trained(), [AccessEvent(MONDAY + 10 * HOUR, "k1", LONDON)], MONDAY + 10 * HOUR
    )
    how = list(prof.how)
    late = [AccessEvent(MONDAY + 10 * HOUR - 3000, "k1", SYDNEY)]  # reordered across batches
    prof, alerts = analyzer.analyze(LIVE, prof, late, MONDAY + 10 * HOUR)
    assert "geo.impossible_travel" not in {s.type for a in alerts for s in a.signals}
    assert prof.how == how and prof.loc_key == "GB/London"


def test_future_clock_skew_is_clamped(geo: GeoResolver, trained: Callable[[], KeyProfile]) -> None:
    now = MONDAY + 10 * HOUR
    prof, _ = Analyzer(geo).analyze(
        LIVE, trained(), [AccessEvent(now + 30 * DAY, "k1", LONDON)], now
    )
    assert prof.last_ts == now and prof.learned  # no jump into the future, no relearning


def test_travel_after_normal_use(geo: GeoResolver, trained: Callable[[], KeyProfile]) -> None:
    events = [
        AccessEvent(MONDAY + 10 * HOUR, "k1", LONDON),
        AccessEvent(MONDAY + 10 * HOUR + 900, "k1", SYDNEY),
    ]
    _, alerts = Analyzer(geo).analyze(LIVE, trained(), events, MONDAY + 11 * HOUR)
    types = {s.type for a in alerts for s in a.signals}
    assert {"geo.impossible_travel", "geo.new_country"} <= types
    assert all(a.action != "revoke" for a in alerts)  # travel is not compromise evidence


def test_no_geo_resolver_still_counts(trained: Callable[[], KeyProfile]) -> None:
    ev = [AccessEvent(MONDAY + 3 * HOUR, "k1", MOSCOW, key_in_query=True)]
    _, alerts = Analyzer(None).analyze(LIVE, trained(), ev, MONDAY + 3 * HOUR)
    assert {s.type for a in alerts for s in a.signals} == {
        "time.off_hours",
        "transport.key_in_query",
    }
    assert all(a.action == "log" for a in alerts)

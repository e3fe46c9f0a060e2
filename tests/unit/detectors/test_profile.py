"""Key profile: hour-of-week arithmetic, late events, relearning, serialization and size."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from detectors.config import DetectorConfig
from detectors.model import GeoInfo
from detectors.profile import MAX_COUNTRIES, Incident, KeyProfile, hour_of_week
from tests.unit.detectors.conftest import DAY, HOUR, T0

CFG = DetectorConfig()


@pytest.mark.parametrize(
    "ts, expected",
    [
        (T0, 0),  # Monday 00:00 UTC
        (T0 - 1, 167),  # Sunday 23:59:59
        (0.0, 72),  # 1970-01-01 was a Thursday
        (T0 + 2 * DAY + 13 * HOUR + 59 * 60, 61),  # Wednesday 13:59
    ],
)
def test_hour_of_week(ts: float, expected: int) -> None:
    assert hour_of_week(int(ts) // 3600) == expected


def test_round_trip(trained: Callable[[], KeyProfile]) -> None:
    prof = trained()
    prof.incidents["usage.spike"] = Incident("high", T0, T0 + 60, 3, "01ABC", 34, "at 20x")
    again = KeyProfile.from_bytes(prof.to_bytes())
    for name in (
        "learned",
        "countries",
        "places",
        "asns",
        "hour_slots",
        "cur_hour",
        "ring",
        "loc_key",
    ):
        assert getattr(again, name) == getattr(prof, name), name
    assert again.how == pytest.approx(prof.how, rel=1e-3)
    assert again.level == pytest.approx(prof.level, rel=1e-3)
    assert again.spike_min_count == prof.spike_min_count and again.usual_hours == prof.usual_hours
    assert again.incidents["usage.spike"].to_list() == prof.incidents["usage.spike"].to_list()
    assert again.to_bytes() == KeyProfile.from_bytes(again.to_bytes()).to_bytes()


def test_busy_key_stays_under_two_kilobytes() -> None:
    prof = KeyProfile()
    for i in range(3000):
        ts = T0 + i * 300.0
        prof.count_event(ts, CFG)
        c = f"C{i % 40:02d}"
        geo = GeoInfo(c, f"City number {i % 30}", 10.0 + i % 7, 20.0, 1000.0, 60000 + i % 50, "org")
        prof.observe_geo(ts, geo, f"{c}/City number {i % 30}", False)
    for t in (
        "a.aaaaaaaaaaaaa",
        "b.bbbbbbbbbbbbbb",
        "c.ccccccccccccc",
        "d.ddddddddddd",
        "e.eeeeeeeeeeeee",
    ):
        prof.incidents[t] = Incident(
            "critical", T0, T0, 99999, "01JD0000000000000000000000", 44, "x" * 60
        )
    assert len(prof.countries) == MAX_COUNTRIES
    assert len(prof.to_bytes()) <= 2048


def test_late_events_do_not_rewrite_closed_hours() -> None:
    prof = KeyProfile()
    for i in range(120):
        prof.count_event(T0 + i * 60.0, CFG)  # two hours of traffic
    closed = list(prof.how)
    assert prof.count_event(T0 + 5.0, CFG) is True  # an hour-old straggler
    assert prof.how == closed and prof.last_ts == T0 + 119 * 60
    assert prof.count_event(T0 + 119 * 60 - 1.0, CFG) is True  # late, within the ring window
    assert prof.ring[(int(T0) // 60 + 118) % len(prof.ring)] == 2


def test_relearns_after_long_inactivity() -> None:
    prof = KeyProfile()
    for d in range(8):
        prof.count_event(T0 + d * DAY, CFG)
    assert prof.learned
    prof.count_event(T0 + 40 * DAY, CFG)
    assert not prof.learned and prof.learn_start == T0 + 40 * DAY


def test_learning_finishes_within_seven_days_for_a_quiet_key() -> None:
    prof = KeyProfile()
    for h in range(0, 7 * 24 + 1, 12):  # two requests a day
        prof.count_event(T0 + h * HOUR, CFG)
    assert prof.learned


@pytest.mark.parametrize("raw", [b"", b"\x01\x02garbage", b"\x93\x02\x00\x00"])
def test_corrupt_bytes_raise_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        KeyProfile.from_bytes(raw)

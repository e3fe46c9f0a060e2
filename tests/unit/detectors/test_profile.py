"""Key profile: hour-of-week arithmetic, late events, relearning, serialization and size."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from detectors.config import DetectorConfig
from detectors.model import GeoInfo
from detectors.profile import (
    ESTABLISHED,
    MAX_COUNTRIES,
    SEEN,
    UNSEEN,
    Incident,
    KeyProfile,
    endpoint_key,
    hour_of_week,
)
from detectors.record import VERSION, ProfileRecord, decode
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
    prof.agents["acme-sdk"] = [20000, 2]
    prof.held = [3.0, 9.0, 90.0]
    for net in ("81.2.69.0/24", "2a02:6b8::/48", "5.255.255.0/24"):
        prof.count_network(net)
    prof.net_peak = 7.2
    again = KeyProfile.from_bytes(prof.to_bytes())
    for name in (
        "learned",
        "countries",
        "places",
        "asns",
        "agents",
        "known",
        "est_countries",
        "est_places",
        "hour_slots",
        "cur_hour",
        "ring",
        "loc_key",
        "peaks",
        "held",
        "base5",
        "hour_nets",
        "net_bits",
        "net_peak",
    ):
        assert getattr(again, name) == getattr(prof, name), name
    assert again.how == pytest.approx(prof.how, rel=1e-3)
    assert again.level == pytest.approx(prof.level, rel=1e-3)
    assert (again.t1, again.t5, again.t60) == (prof.t1, prof.t5, prof.t60)
    assert again.usual_hours == prof.usual_hours
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
        prof.observe_agent(ts, f"some-long-user-agent-family-{i % 9:02d}-xxxxxxxxxxxxx")
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
    prof.hour_new = [f"C{i:02d}" for i in range(8)]
    for i in range(200):  # a fleet's hour: the network sketch full
        prof.count_network(f"10.{i}.0.0/24")
    prof.net_peak = 479.9
    for i in range(20):  # the endpoint table: full, counts saturated
        prof.count_path(endpoint_key(f"/v1/endpoint-{i}"))
    for e in prof.paths.values():
        e[0], e[1] = 70000, 70000
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


FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "profile_v1.json"


def _v1_profiles() -> list[dict]:  # type: ignore[type-arg]
    return json.loads(FIXTURE.read_text())["profiles"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("entry", _v1_profiles(), ids=lambda e: e["key_id"])
def test_version_1_profiles_still_decode(entry: dict) -> None:  # type: ignore[type-arg]
    """Profiles written by the exact-length msgpack array encoding (v1) are migrated."""
    raw = base64.b64decode(entry["profile_v1_b64"])
    assert msgpack.unpackb(raw)[0] == 1  # really the old encoding
    prof = KeyProfile.from_bytes(raw)
    assert prof.total_events == entry["total_events"] and prof.learned == entry["learned"]
    assert sorted(prof.countries) == entry["countries"] and sorted(prof.places) == entry["places"]
    assert sorted(prof.incidents) == entry["incidents"] and prof.cur_hour == entry["cur_hour"]
    assert prof.last_ts == pytest.approx(entry["last_ts"], abs=1e-3)
    # What v1 knew stays known: no country or place of an old profile alerts as new.
    assert all(prof.country_state(c) == ESTABLISHED for c in entry["countries"])
    assert all(prof.place_state(p) == ESTABLISHED for p in entry["places"])
    assert prof.peaks[2] == pytest.approx(prof.level) and prof.t60 < 1 << 30
    again = decode(prof.to_bytes())
    assert again.version == VERSION and isinstance(again, ProfileRecord)
    assert len(prof.to_bytes()) <= 2048


def test_records_are_append_only() -> None:
    """A record with only the version 1 fields (a shorter array) decodes with defaults."""
    prof = KeyProfile()
    prof.count_event(T0, CFG)
    full = msgpack.unpackb(prof.to_bytes(), strict_map_key=False)
    short = msgpack.packb([2, *full[1:19]])
    again = KeyProfile.from_bytes(short)
    assert again.agents == {} and again.total_events == 1
    assert again.peaks[2] == again.level  # no maxima yet: estimated from the busy-hour level
    with pytest.raises(ValueError, match="unknown key profile version"):
        KeyProfile.from_bytes(msgpack.packb([99, *full[1:]]))


def test_places_are_established_by_days_not_counts() -> None:
    prof = KeyProfile()
    geo = GeoInfo("RU", "Moscow", 55.75, 37.62, 20.0)
    for i in range(500):  # a burst of 500 requests in one day: seen, not established
        prof.observe_geo(T0 + i, geo, "RU/Moscow", False)
    assert prof.country_state("RU") == SEEN and prof.place_state("RU/Moscow") == SEEN
    for d in (1, 2):
        prof.observe_geo(T0 + d * DAY, geo, "RU/Moscow", False)
    assert prof.country_state("RU") == ESTABLISHED and prof.place_state("RU/Moscow") == ESTABLISHED
    assert prof.est_countries == 1 and prof.est_places == 1
    for i in range(MAX_COUNTRIES):  # busier established countries evict it: still remembered
        for d in range(3, 6):
            for k in range(200):
                prof.observe_geo(T0 + d * DAY + k, GeoInfo(f"X{i}"), "", False)
    assert "RU" not in prof.countries and prof.country_state("RU") == ESTABLISHED
    assert prof.country_state("ZZ") == UNSEEN


def test_nothing_is_established_while_the_key_is_throttled() -> None:
    """A prober's third day, under a throttle-level incident, does not make its country normal."""
    prof = KeyProfile()
    geo = GeoInfo("RU", "Moscow", 55.75, 37.62, 20.0)
    for d in (0, 1):
        prof.observe_geo(T0 + d * DAY, geo, "RU/Moscow", False)
    prof.incidents["geo.impossible_travel"] = Incident("high", T0 + 2 * DAY, T0 + 2 * DAY,
                                                       alert_rank=33)  # fmt: skip
    prof.observe_geo(T0 + 2 * DAY + 60, geo, "RU/Moscow", False)
    assert prof.country_state("RU") == SEEN
    del prof.incidents["geo.impossible_travel"]
    prof.observe_geo(T0 + 3 * DAY, geo, "RU/Moscow", False)
    assert prof.country_state("RU") == ESTABLISHED


@pytest.mark.parametrize(
    "signal_type, evidence, check",
    [
        ("geo.new_country", {"country": "RU", "known": ["GB"]}, "country"),
        ("geo.new_place", {"place": "GB/Leeds", "country": "GB"}, "place"),
        ("client.new_user_agent", {"agent": "python-requests"}, "agent"),
        ("time.off_hours", {"hour_utc": 3, "usual_hours_utc": [8, 9]}, "hour"),
        (
            "usage.spike",
            {"observed_per_minute": 50, "observed_per_5min": 200, "observed_per_hour": 2000},
            "rate",
        ),
        ("network.new_asn", {"asn": 64500, "country": "GB"}, "asn"),
    ],
)
def test_learn_feedback(
    trained: Callable[[], KeyProfile],
    signal_type: str,
    evidence: dict,
    check: str,  # type: ignore[type-arg]
) -> None:
    """Resolving an alert as benign teaches the profile what it was about."""
    prof = trained()
    prof.incidents[signal_type] = Incident("medium", T0, T0)
    assert prof.learn_feedback(signal_type, evidence, T0 + 9 * DAY)
    assert signal_type not in prof.incidents
    if check == "country":
        assert prof.country_state("RU") == ESTABLISHED
    elif check == "place":
        assert prof.place_state("GB/Leeds") == ESTABLISHED
    elif check == "agent":
        assert prof.agent_state("python-requests") == ESTABLISHED
    elif check == "hour":
        assert prof.hour_slots[3] >= 1
    elif check == "rate":
        assert prof.peaks == [50.0, 200.0, 2000.0] and prof.t60 >= 6000
    else:
        assert prof.asn_state(64500) == ESTABLISHED
    survivor = KeyProfile.from_bytes(prof.to_bytes())  # what was learned is persisted
    assert survivor.to_bytes() == prof.to_bytes()
    assert not prof.learn_feedback("geo.new_country", {"unrelated": 1}, T0)


@pytest.mark.parametrize("stored", ["high", 3])
def test_incident_severity_decodes_as_name_or_rank(stored: str | int) -> None:
    """Records before the rank encoding stored the severity's name; both decode the same."""
    prof = KeyProfile()
    prof.incidents["usage.spike"] = Incident(
        "high", T0, T0 + 60, 5, "01JD0000000000000000000000", 30, "n"
    )
    rec = prof.to_record()
    assert rec.incidents["usage.spike"][0] == 3  # what this release writes
    rec.incidents["usage.spike"][0] = stored
    again = KeyProfile.from_record(rec)
    assert again.incidents["usage.spike"].severity == "high"
    assert again.incidents["usage.spike"].to_list() == prof.incidents["usage.spike"].to_list()

"""Parametrized tables for each detector: event + profile + context -> signals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from detectors import (
    impossible_travel,
    key_in_query,
    new_asn,
    new_country,
    off_hours,
    usage_spike,
)
from detectors.config import DetectorConfig, EvalContext
from detectors.model import AccessEvent
from detectors.profile import KeyProfile
from detectors.registry import DETECTORS, detector_types
from geoip.resolver import GeoResolver
from tests.unit.detectors.conftest import (
    BERLIN_COARSE,
    DAY,
    HOUR,
    LONDON,
    LONDON_NEW_ASN,
    MOSCOW,
    MOSCOW6,
    PARIS,
    SYDNEY,
    T0,
    US_NO_COORDS,
)

MONDAY = T0 + 7 * DAY  # a week after training began
Factory = Callable[[], KeyProfile]


def run(fn, geo: GeoResolver, prof: KeyProfile, ev: AccessEvent, late: bool = False):  # type: ignore[no-untyped-def]
    ctx = EvalContext(DetectorConfig()).set(ev.ts, geo.lookup(ev.ip), late)
    return fn(ev, prof, ctx)


def test_registry_is_alphabetical_and_complete() -> None:
    assert detector_types() == sorted(detector_types())
    assert len(DETECTORS) == 7


@pytest.mark.parametrize(
    "ip, learned, expected",
    [
        (MOSCOW, True, "RU"),
        (MOSCOW6, True, "RU"),  # IPv6
        (LONDON, True, None),  # known
        (MOSCOW, False, None),  # still learning
        ("10.1.2.3", True, None),  # private: no geo, no signal
        (US_NO_COORDS, True, "US"),  # country without coordinates still counts
    ],
)
def test_new_country(
    geo: GeoResolver, trained: Factory, ip: str, learned: bool, expected: str | None
) -> None:
    prof = trained()
    prof.learned = learned
    out = run(new_country.evaluate, geo, prof, AccessEvent(MONDAY + 10 * HOUR, "k1", ip))
    assert [s.evidence["country"] for s in out] == ([expected] if expected else [])
    if out:
        assert out[0].severity == "medium" and out[0].evidence["known"] == ["GB"]


@pytest.mark.parametrize(
    "ip, seconds_later, late, fires",
    [
        (SYDNEY, 600, False, True),  # 17,000 km in 10 minutes
        (MOSCOW6, 600, False, True),  # IPv6, 2,500 km in 10 minutes
        (SYDNEY, 2 * DAY, False, False),  # plausible by plane
        (PARIS, 60, False, False),  # 340 km: under the 500 km minimum
        (BERLIN_COARSE, 60, False, False),  # 930 km minus a 1000 km accuracy radius
        (US_NO_COORDS, 60, False, False),  # no coordinates
        (SYDNEY, 600, True, False),  # late (reordered) event: order unknown, skipped
        (SYDNEY, 0, False, True),  # same instant (clock skew): elapsed floored at 1 s
    ],
)
def test_impossible_travel(
    geo: GeoResolver, trained: Factory, ip: str, seconds_later: float, late: bool, fires: bool
) -> None:
    prof = trained()
    base = prof.loc_ts
    out = run(
        impossible_travel.evaluate, geo, prof, AccessEvent(base + seconds_later, "k1", ip), late
    )
    assert bool(out) == fires
    if out:
        assert out[0].severity == "high" and out[0].evidence["speed_kmh"] > 1000


def test_travel_between_known_places_is_not_travel(geo: GeoResolver, trained: Factory) -> None:
    prof = trained()
    prof.places["AU/Sydney"] = [500, int(prof.loc_ts), -33.8, 151.2]
    assert (
        run(impossible_travel.evaluate, geo, prof, AccessEvent(prof.loc_ts + 60, "k1", SYDNEY))
        == []
    )


@pytest.mark.parametrize(
    "ip, fires",
    [(LONDON_NEW_ASN, True), (LONDON, False), (MOSCOW, False), (US_NO_COORDS, False)],
)
def test_new_asn(geo: GeoResolver, trained: Factory, ip: str, fires: bool) -> None:
    out = run(new_asn.evaluate, geo, trained(), AccessEvent(MONDAY + 10 * HOUR, "k1", ip))
    assert bool(out) == fires
    if out:
        assert out[0].evidence == {
            "asn": 200,
            "asn_org": "Other Net",
            "known": [100],
            "country": "GB",
            "ip": ip,
        }


@pytest.mark.parametrize(
    "hour, learned, fires",
    [
        (3, True, True),
        (23, True, True),
        (0, True, True),  # midnight: UTC day boundary
        (7, True, False),  # one hour before the usual 08-17: tolerance
        (18, True, False),  # one hour after
        (12, True, False),
        (3, False, False),  # learning
    ],
)
def test_off_hours(
    geo: GeoResolver, trained: Factory, hour: int, learned: bool, fires: bool
) -> None:
    prof = trained()
    prof.learned = learned
    out = run(off_hours.evaluate, geo, prof, AccessEvent(MONDAY + hour * HOUR + 59, "k1", LONDON))
    assert bool(out) == fires
    if out:
        assert out[0].evidence["hour_utc"] == hour and out[0].evidence["usual_hours_utc"] == list(
            range(8, 18)
        )


@pytest.mark.parametrize("flag, fires", [(True, True), (False, False)])
def test_key_in_query(geo: GeoResolver, trained: Factory, flag: bool, fires: bool) -> None:
    ev = AccessEvent(
        MONDAY, "k1", LONDON, method="GET", path="/v1/x?api_key=SECRET", key_in_query=flag
    )
    out = run(key_in_query.evaluate, geo, trained(), ev)
    assert bool(out) == fires
    if out:
        assert out[0].evidence["path"] == "/v1/x" and "SECRET" not in str(out[0].evidence)


def _feed(
    prof: KeyProfile, start: float, per_minute: int, minutes: int, cfg: DetectorConfig
) -> int:
    """Count a steady rate into the profile and run the spike detector; return signals."""
    ctx, fired = EvalContext(cfg), 0
    for m in range(minutes):
        for i in range(per_minute):
            ts = start + m * 60 + i * (60 / per_minute)
            ctx.late = prof.count_event(ts, cfg)
            fired += len(usage_spike.evaluate(AccessEvent(ts, "k1", LONDON), prof, ctx))
    return fired


@pytest.mark.parametrize(
    "hour, per_minute, minutes, fires",
    [
        (10, 10, 10, True),  # 600/h vs 30/h baseline: 20x, sustained
        (10, 10, 2, False),  # too short to be sustained
        (10, 1, 10, False),  # 60/h: 2x, a benign burst
        (10, 3, 10, False),  # 180/h: 6x, below 10x
        (3, 3, 10, False),  # 180/h at night: below the absolute floor (240/h)
        (3, 5, 10, True),  # 300/h at night: above the floor and 10x the night baseline
    ],
)
def test_usage_spike(
    trained: Factory, hour: int, per_minute: int, minutes: int, fires: bool
) -> None:
    prof = trained()
    assert bool(_feed(prof, MONDAY + hour * HOUR, per_minute, minutes, DetectorConfig())) == fires


def test_spike_floor_for_tiny_keys() -> None:
    """A key at 2 requests/hour does not alarm at 20 requests/hour."""
    cfg = DetectorConfig()
    prof = KeyProfile()
    for d in range(8):
        for h in range(24):
            for i in range(2):
                prof.count_event(T0 + d * DAY + h * HOUR + i * 1800, cfg)
    assert prof.learned
    assert _feed(prof, T0 + 8 * DAY + 10 * HOUR, 1, 30, cfg) == 0  # 60/h: 30x but under the floor
    assert _feed(prof, T0 + 8 * DAY + 12 * HOUR, 10, 10, cfg) > 0  # 600/h

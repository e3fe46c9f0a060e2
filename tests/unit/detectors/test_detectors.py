"""Parametrized tables for each detector: event + profile + context -> signals."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from detectors import (
    impossible_travel,
    key_in_query,
    network_spread,
    new_agent,
    new_asn,
    new_country,
    new_place,
    off_hours,
    usage_spike,
)
from detectors.config import DetectorConfig, EvalContext
from detectors.model import AccessEvent
from detectors.profile import Incident, KeyProfile
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
    ctx = EvalContext(DetectorConfig()).set(ev.ts, geo.lookup(ev.ip), late, ev.user_agent)
    return fn(ev, prof, ctx)


def with_agent(prof: KeyProfile, family: str = "acme-sdk") -> KeyProfile:
    """The profile with an established client."""
    prof.agents[family] = [0, 3]
    return prof


def test_registry_is_alphabetical_and_complete() -> None:
    assert detector_types() == sorted(detector_types())
    assert len(DETECTORS) == 14


@pytest.mark.parametrize(
    "ip, learned, ua, setup, expected",
    [
        (MOSCOW, True, "", None, ("RU", "medium")),
        (MOSCOW6, True, "", None, ("RU", "medium")),  # IPv6
        (LONDON, True, "", None, None),  # established
        (MOSCOW, False, "", None, None),  # still learning
        ("10.1.2.3", True, "", None, None),  # private: no geo, no signal
        (US_NO_COORDS, True, "", None, ("US", "medium")),  # country without coordinates counts
        # A traveller: the key's own client from a new country is only logged.
        (MOSCOW, True, "acme-sdk/2.1", "own_client", ("RU", "low")),
        (MOSCOW, True, "python-requests/2.31", "own_client", ("RU", "medium")),
        # Seen on one day before (a probe, a traveller's first day): not established yet.
        (MOSCOW, True, "", "seen_once", ("RU", "medium")),
        (MOSCOW, True, "acme-sdk/2.1", "seen_once+own_client", ("RU", "low")),  # traveller, day 2
        # Established long ago, evicted from the table since: remembered, not new.
        (MOSCOW, True, "", "evicted", None),
        # A CI fleet (several established countries): one more runner country is not news...
        (MOSCOW, True, "GitHub-Actions", "fleet", None),
        # ... unless a new client comes with it.
        (MOSCOW, True, "curl/8.5", "fleet", ("RU", "low")),
    ],
)
def test_new_country(
    geo: GeoResolver,
    trained: Factory,
    ip: str,
    learned: bool,
    ua: str,
    setup: str | None,
    expected: tuple[str, str] | None,
) -> None:
    prof = trained()
    prof.learned = learned
    if setup == "own_client":
        with_agent(prof)
    elif setup and setup.startswith("seen_once"):
        prof.countries["RU"] = [4, int(MONDAY - DAY), 1]
        if setup.endswith("own_client"):
            with_agent(prof)
    elif setup == "evicted":
        prof.learn_feedback("geo.new_country", {"country": "RU"}, MONDAY)
        del prof.countries["RU"]
    elif setup == "fleet":
        with_agent(prof, "github-actions")
        for cc in ("DE", "FR", "US"):
            prof.learn_feedback("geo.new_country", {"country": cc}, MONDAY)
    ev = AccessEvent(MONDAY + 10 * HOUR, "k1", ip, user_agent=ua)
    out = run(new_country.evaluate, geo, prof, ev)
    assert [(s.evidence["country"], s.severity) for s in out] == ([expected] if expected else [])
    if out and setup is None:
        assert out[0].evidence["known"] == ["GB"]


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


@pytest.mark.parametrize(
    "setup, fires",
    [
        ("sydney_established", False),  # a multi-region deployment: both places are its own
        ("sydney_seen_once", True),  # seen once is not established (a probe)
        ("many_places", False),  # a fleet in many places: moves between them are not travel
    ],
)
def test_travel_between_established_places_is_not_travel(
    geo: GeoResolver, trained: Factory, setup: str, fires: bool
) -> None:
    prof = trained()
    if setup == "sydney_established":
        prof.places["AU/Sydney"] = [500, int(prof.loc_ts), -33.8, 151.2, 3]
    elif setup == "sydney_seen_once":
        prof.places["AU/Sydney"] = [500, int(prof.loc_ts), -33.8, 151.2, 1]
    else:
        for place in ("US/Boston", "DE/Berlin", "JP/Tokyo"):
            prof.learn_feedback("geo.new_place", {"place": place}, prof.loc_ts)
    out = run(impossible_travel.evaluate, geo, prof, AccessEvent(prof.loc_ts + 60, "k1", SYDNEY))
    assert bool(out) == fires


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
    prof: KeyProfile, start: float, per_minute: int, minutes: int, cfg: DetectorConfig,
    on: int = 0, off: int = 0,
) -> list[str]:  # fmt: skip
    """Count a rate into the profile (``on`` minutes of every ``on + off``, when given) and run
    the volume detector on each event; returns the severities signalled."""
    ctx, fired = EvalContext(cfg), []
    for m in range(minutes):
        if on and m % (on + off) >= on:
            continue
        for i in range(per_minute):
            ts = start + m * 60 + i * (60 / per_minute)
            ctx.late = prof.count_event(ts, cfg)
            fired += [
                s.severity for s in usage_spike.evaluate(AccessEvent(ts, "k1", LONDON), prof, ctx)
            ]
    return fired


def _peaks(prof: KeyProfile, p1: float, p5: float, p60: float) -> KeyProfile:
    prof.peaks = [p1, p5, p60]
    prof._derive(prof.cur_hour, DetectorConfig())
    return prof


@pytest.mark.parametrize(
    "peaks, per_minute, minutes, on_off, expected",
    [
        # The trained office key: 30/h evenly (busiest minute 1, 5 minutes 3, hour 30).
        (None, 10, 10, (0, 0), "low"),  # 600/h: the 5-minute window crosses 40
        (None, 10, 2, (0, 0), None),  # 20 in two minutes: a burst
        (None, 1, 10, (0, 0), None),  # 60/h: twice the usual rate
        (None, 5, 10, (0, 0), None),  # 25 in 5 minutes: under the 5-minute floor
        # A bursty developer (busiest minute 30, 5 minutes 80, hour 400): paginations are normal.
        ((30, 80, 400), 40, 3, (0, 0), None),
        ((30, 80, 400), 100, 3, (0, 0), "low"),  # 100/minute: over 3x its busiest minute
        # An office key at 100-1000 requests/day (busiest minute 6): a burst of 15 is nothing.
        ((6, 20, 120), 15, 1, (0, 0), None),
        # A duty-cycle flood, 2 minutes in every 5, on a quiet key: it pauses and resumes,
        # which a batch job does not: medium at once.
        ((5, 15, 100), 60, 15, (2, 3), "medium"),
        ((5, 15, 100), 60, 25, (3, 7), "medium"),  # 3 minutes in every 10
        ((5, 15, 100), 60, 3, (0, 0), "low"),  # the same rate without a pause: a batch job
        # A CI fleet's job (busiest 5 minutes 300): a job of 250 in 5 minutes is normal.
        ((80, 300, 900), 50, 5, (0, 0), None),
    ],
)
def test_usage_spike(
    trained: Factory,
    peaks: tuple[float, float, float] | None,
    per_minute: int,
    minutes: int,
    on_off: tuple[int, int],
    expected: str | None,
) -> None:
    prof = trained()
    if peaks:
        _peaks(prof, *peaks)
    cfg = DetectorConfig()
    out = _feed(prof, MONDAY + 10 * HOUR, per_minute, minutes, cfg, *on_off)
    worst = max(out, key=["low", "medium"].index) if out else None
    assert worst == expected


def test_usage_spike_that_persists_becomes_medium(trained: Factory) -> None:
    prof = trained()
    start = MONDAY + 10 * HOUR
    prof.incidents["usage.spike"] = Incident("low", start - 3700, start - 60)
    assert "medium" in _feed(prof, start, 10, 6, DetectorConfig())


@pytest.mark.parametrize(
    "ip, per_minute, fires",
    [
        (MOSCOW, 20, True),  # 1,200/h from a new country: 40x the typical hour (30)
        (LONDON, 20, False),  # the same from home: within the weekly batch's peak
        (MOSCOW, 3, False),  # a traveller at an ordinary rate (180/h): 6x, under 10x
        ("own-client", 20, False),  # the owner's own SDK abroad: only its own maxima count
    ],
)
def test_volume_from_a_new_place_ignores_batch_peaks(
    geo: GeoResolver, trained: Factory, ip: str, per_minute: int, fires: bool
) -> None:
    """A key whose weekly batch ran at 10k/hour is still flooded from a new place at 1.2k/hour."""
    prof = _peaks(trained(), 200, 900, 10000)
    ua = ""
    if ip == "own-client":
        ip, ua = MOSCOW, "acme-sdk/2.0"
        with_agent(prof)
    cfg, fired = DetectorConfig(), []
    start = MONDAY + 10 * HOUR
    ctx = EvalContext(cfg).set(start, geo.lookup(ip), user_agent=ua)
    for m in range(60):
        for i in range(per_minute):
            ts = start + m * 60 + i * (60 / per_minute)
            ctx.late = prof.count_event(ts, cfg)
            fired += usage_spike.evaluate(AccessEvent(ts, "k1", ip), prof, ctx)
    assert bool(fired) == fires
    if fired:
        assert fired[0].evidence["windows"] == ["1h_vs_typical_hour"]


def test_spike_floor_for_tiny_keys() -> None:
    """A key at 2 requests/hour does not alarm at 60 requests/hour."""
    cfg = DetectorConfig()
    prof = KeyProfile()
    for d in range(8):
        for h in range(24):
            for i in range(2):
                prof.count_event(T0 + d * DAY + h * HOUR + i * 1800, cfg)
    assert prof.learned
    assert _feed(prof, T0 + 8 * DAY + 10 * HOUR, 1, 30, cfg) == []  # 60/h: 30x but under floors
    assert _feed(prof, T0 + 8 * DAY + 12 * HOUR, 10, 10, cfg)  # 600/h


@pytest.mark.parametrize(
    "ip, setup, fires",
    [
        (PARIS, "fr_established", False),  # a known country's known city
        (LONDON, None, False),  # home
        (MOSCOW, None, False),  # a new country is geo.new_country's case
        (PARIS, "fr_country_only", True),  # a new city in an established country (cloud VM)
        (PARIS, "fleet", False),  # keys used from many places are judged by country
        (US_NO_COORDS, None, False),  # no coordinates, no place
    ],
)
def test_new_place(
    geo: GeoResolver, trained: Factory, ip: str, setup: str | None, fires: bool
) -> None:
    prof = trained()
    if setup == "fr_established":
        prof.learn_feedback("geo.new_place", {"country": "FR", "place": "FR/Paris"}, MONDAY)
    elif setup == "fr_country_only":
        prof.learn_feedback("geo.new_country", {"country": "FR"}, MONDAY)
    elif setup == "fleet":
        prof.learn_feedback("geo.new_country", {"country": "FR"}, MONDAY)
        for place in ("US/Boston", "DE/Berlin", "JP/Tokyo"):
            prof.learn_feedback("geo.new_place", {"place": place}, MONDAY)
    out = run(new_place.evaluate, geo, prof, AccessEvent(MONDAY + 10 * HOUR, "k1", ip))
    assert bool(out) == fires
    if out:
        assert out[0].severity == "low" and out[0].evidence["place"] == "FR/Paris"


@pytest.mark.parametrize(
    "already, ip, setup, expected",
    [
        (["FR", "US", "AU"], MOSCOW, None, "high"),  # the 4th new country within the hour
        (["FR", "US"], MOSCOW, None, None),  # three: a traveller and a VPN, not yet
        (["FR", "US", "AU", "DE", "JP", "NL", "SE"], MOSCOW, None, "critical"),  # eight
        (["FR", "US", "AU"], LONDON, None, None),  # the key's own country does not count
        (["FR", "US", "RU"], MOSCOW, None, None),  # already counted this hour
        # A multi-region service: its countries are established and never count.
        (["FR", "US", "AU"], MOSCOW, "ru_established", None),
    ],
)
def test_network_spread(
    geo: GeoResolver,
    trained: Factory,
    already: list[str],
    ip: str,
    setup: str | None,
    expected: str | None,
) -> None:
    prof = trained()
    prof.hour_new = list(already)
    if setup == "ru_established":
        prof.learn_feedback("geo.new_country", {"country": "RU"}, MONDAY)
    out = run(network_spread.evaluate, geo, prof, AccessEvent(MONDAY + 10 * HOUR, "k1", ip))
    assert [s.severity for s in out] == ([expected] if expected else [])


@pytest.mark.parametrize(
    "ua, known, fires",
    [
        ("python-requests/2.31.0", {"acme-sdk": 3}, True),
        ("acme-sdk/2.4.0", {"acme-sdk": 3}, False),  # an SDK upgrade keeps its family
        ("", {"acme-sdk": 3}, False),  # no user agent
        ("curl/8.5.0", {}, False),  # the key never sent one: nothing to compare
        ("curl/8.5.0", {"acme-sdk": 3, "curl": 1}, False),  # seen already (one alert is enough)
    ],
)
def test_new_user_agent(
    geo: GeoResolver, trained: Factory, ua: str, known: dict[str, int], fires: bool
) -> None:
    prof = trained()
    prof.agents = {k: [0, d] for k, d in known.items()}
    ev = AccessEvent(MONDAY + 10 * HOUR, "k1", LONDON, user_agent=ua)
    out = run(new_agent.evaluate, geo, prof, ev)
    assert bool(out) == fires
    if out:
        assert out[0].evidence["agent"] == "python-requests"

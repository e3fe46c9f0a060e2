"""A benign verdict teaches the profile: the same behaviour stops alerting (and only then)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from detectors.analyzer import Analyzer
from detectors.feedback import apply_benign, learn_feedback
from detectors.model import AccessEvent, Alert, GeoInfo, KeyContext
from detectors.profile import ESTABLISHED, MAX_COUNTRIES, KeyProfile
from geoip.resolver import GeoResolver
from tests.unit.detectors.conftest import DAY, HOUR, LONDON, PARIS, T0

WEEK2 = T0 + 8 * DAY  # Tuesday of the week after the office week the key learned


def _spike(start: float) -> list[AccessEvent]:
    """Ten minutes at 60 requests a minute (the key's baseline is 30 an hour)."""
    return [AccessEvent(start + i, "k1", LONDON) for i in range(600)]


def _night(start: float) -> list[AccessEvent]:
    return [AccessEvent(start + i * 60, "k1", LONDON) for i in range(3)]


def _paris(start: float) -> list[AccessEvent]:
    """A few requests from a country the key has never used."""
    return [AccessEvent(start + i * 60, "k1", PARIS) for i in range(3)]


def _office_day(day: float) -> list[AccessEvent]:
    return [AccessEvent(day + h * HOUR + i * 120, "k1", LONDON)
            for h in range(8, 18) for i in range(30)]  # fmt: skip


def _types(alerts: list[Alert]) -> set[str]:
    return {s.type for a in alerts for s in a.signals}


def _signals(alerts: list[Alert]) -> list[dict[str, object]]:
    return [s.to_dict() for a in alerts for s in a.signals]


@pytest.mark.parametrize(
    "make, at, kind",
    [(_paris, 10 * HOUR, "geo.new_country")],
)
@pytest.mark.parametrize("benign", [True, False])
def test_benign_behaviour_stops_recurring(
    geo: GeoResolver, trained: Callable[[], KeyProfile],
    make: Callable[[float], list[AccessEvent]], at: float, kind: str, benign: bool,
) -> None:  # fmt: skip
    analyzer, ctx = Analyzer(geo), KeyContext("k1")
    prof, first = analyzer.analyze(ctx, trained(), make(WEEK2 + at), WEEK2 + at + 700)
    assert kind in _types(first)
    if benign:
        learned = apply_benign(prof, _signals(first), WEEK2 + at + 700)
        assert kind in learned and kind not in prof.incidents
    # an ordinary office day, then the same behaviour the next day (incident long closed)
    prof, _ = analyzer.analyze(ctx, prof, _office_day(WEEK2 + DAY), WEEK2 + 2 * DAY)
    nxt = WEEK2 + 2 * DAY + at
    prof, again = analyzer.analyze(ctx, prof, make(nxt), nxt + 700)
    assert (kind in _types(again)) is not benign


def test_a_benign_country_is_established_and_survives_newcomers(
    trained: Callable[[], KeyProfile],
) -> None:
    prof = trained()
    assert learn_feedback(prof, "geo.new_country", {"country": "RU", "known": ["GB"]}, WEEK2)
    assert prof.country_state("RU") == ESTABLISHED
    for i in range(MAX_COUNTRIES):  # newcomers, each seen once, fill and evict the table
        prof.observe_geo(WEEK2 + i, GeoInfo(country=f"X{i}"), "", late=False)
    assert prof.country_state("RU") == ESTABLISHED  # the hashed memory keeps it


def test_benign_travel_establishes_both_places(trained: Callable[[], KeyProfile]) -> None:
    prof = trained()
    evidence = {
        "from": {"place": "GB/London", "lat": 51.51, "lon": -0.09},
        "to": {"place": "SG/Singapore", "lat": 1.29, "lon": 103.85, "ip": "1.2.3.4"},
    }
    assert prof.place_state("SG/Singapore") != ESTABLISHED
    assert learn_feedback(prof, "geo.impossible_travel", evidence, WEEK2)
    assert prof.place_state("SG/Singapore") == ESTABLISHED
    assert prof.place_state("GB/London") == ESTABLISHED


@pytest.mark.parametrize(
    "kind, evidence",
    [("transport.key_in_query", {}), ("transport.second_key", {"country": "RU"}),
     ("geo.new_country", {"country": 7}),
     ("usage.spike", {"observed_per_hour": "lots"}), ("time.off_hours", {"hour_utc": 25}),
     ("geo.unknown_kind", {"country": "RU"})],
)  # fmt: skip
def test_nothing_learnable_is_learned(
    trained: Callable[[], KeyProfile], kind: str, evidence: dict[str, object]
) -> None:
    prof = trained()
    before = prof.to_bytes()
    assert learn_feedback(prof, kind, evidence, WEEK2) is False
    assert prof.to_bytes() == before

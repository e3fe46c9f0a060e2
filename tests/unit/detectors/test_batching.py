"""Live equals replay: the analyzer's alerts do not depend on how events are batched."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

import pytest

from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, Alert, KeyContext
from detectors.profile import KeyProfile
from geoip.resolver import GeoResolver
from worker.traffic import realistic


def _events() -> list[AccessEvent]:
    """Two weeks of realistic traffic for 14 keys, three of them attacked."""
    traffic = realistic(keys=14, days=14, attacks=0, seed=5)
    from worker import shapes

    victims = [p for p in traffic.plans if p.shape in shapes.ATTACKABLE]
    rnd = random.Random(9)
    for name, victim in zip(("classic", "distributed", "duty_cycle"), victims, strict=False):
        if shapes.suits(name, victim):
            shapes.attack(name, victim, rnd, traffic.start, traffic.days)
    return [
        AccessEvent(ts, key, ip, method, path, status, ua, gateway=gw)
        for ts, key, ip, method, path, status, gw, ua in traffic.rows()
    ]


def _replay(geo: GeoResolver, batches: Iterable[list[AccessEvent]]) -> list[dict[str, object]]:
    analyzer = Analyzer(geo)
    profiles: dict[str, KeyProfile] = {}
    out: list[Alert] = []
    for batch in batches:
        per_key: dict[str, list[AccessEvent]] = defaultdict(list)
        for ev in batch:
            per_key[ev.key_id].append(ev)
        for key, evs in per_key.items():
            prof, alerts = analyzer.analyze(KeyContext(key), profiles.get(key), evs, evs[-1].ts)
            profiles[key] = prof
            out.extend(alerts)
    rows = []
    for a in out:
        d = a.to_dict()
        d.pop("detected_at")  # the caller's clock: the only field allowed to differ
        rows.append(d)
    return sorted(rows, key=lambda d: str(d["id"]))


def _by_size(events: list[AccessEvent], size: int) -> list[list[AccessEvent]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def _by_minute(events: list[AccessEvent]) -> list[list[AccessEvent]]:
    out: list[list[AccessEvent]] = []
    minute = -1
    for ev in events:
        if int(ev.ts) // 60 != minute:
            out.append([])
            minute = int(ev.ts) // 60
        out[-1].append(ev)
    return out


def _random_sizes(events: list[AccessEvent], seed: int) -> list[list[AccessEvent]]:
    rnd, out, i = random.Random(seed), [], 0
    while i < len(events):
        n = rnd.choice((1, 7, 50, 400, 3000))
        out.append(events[i : i + n])
        i += n
    return out


@pytest.fixture(scope="module")
def events() -> list[AccessEvent]:
    return _events()


@pytest.fixture(scope="module")
def real_geo() -> Iterable[GeoResolver]:
    with GeoResolver() as geo:
        yield geo


def test_batching_does_not_change_alerts(events: list[AccessEvent], real_geo: GeoResolver) -> None:
    reference = _replay(real_geo, _by_minute(events))
    assert any(a["action"] == "revoke" for a in reference)  # the data set has teeth
    assert len({a["id"] for a in reference}) == len(reference)
    for batching in (
        _by_size(events, 1),
        _by_size(events, 200),
        _by_size(events, 5000),
        _random_sizes(events, 1),
    ):
        assert _replay(real_geo, batching) == reference


def test_partition_interleaving_does_not_change_alerts(
    events: list[AccessEvent], real_geo: GeoResolver
) -> None:
    """Keys split over partitions arrive interleaved differently; each key's order is kept."""
    reference = _replay(real_geo, _by_minute(events))
    parts: dict[int, list[AccessEvent]] = defaultdict(list)
    for ev in events:
        parts[hash(ev.key_id) % 3].append(ev)
    # Partition 0 first, then 1, then 2, in chunks: another arrival order, same per-key order.
    reordered = [chunk for p in sorted(parts) for chunk in _by_size(parts[p], 900)]
    assert _replay(real_geo, reordered) == reference

"""Live equals replay: the worker on the real broker raises the alerts replay raises, id for id."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from detectors.analyzer import Analyzer
from geoip.resolver import GeoResolver
from tests.support.kafka import consume, publish
from tests.support.procs import Proc
from worker import shapes
from worker.devstack import EmbeddedBroker
from worker.replay import Replay
from worker.traffic import realistic

pytestmark = pytest.mark.services


def _messages() -> tuple[list[bytes], int]:
    """Two weeks of realistic traffic for 5 keys, one attacked, as 200-event JSON arrays."""
    traffic = realistic(keys=16, days=14, attacks=0, seed=21)
    light = ("office", "human", "sparse", "traveller")  # keeps the test within its time
    traffic.plans = [p for p in traffic.plans if p.shape in light][:5]
    victims = [p for p in traffic.plans if p.shape in shapes.ATTACKABLE]
    rnd = random.Random(4)
    for name, victim in zip(("classic",), victims, strict=False):
        if shapes.suits(name, victim):
            shapes.attack(name, victim, rnd, traffic.start, traffic.days)
    events = list(traffic.events(ts_format="ms"))
    batches = [orjson.dumps(events[i : i + 200]) for i in range(0, len(events), 200)]
    return batches, len(events)


def _key(alert: dict[str, object]) -> tuple[object, ...]:
    types = tuple(sorted(str(s["type"]) for s in alert["signals"]))  # type: ignore[attr-defined]
    return alert["id"], alert["key_id"], alert["ts"], alert["severity"], alert["action"], types


def test_worker_alerts_equal_replay_alerts(worker: Proc, broker: EmbeddedBroker) -> None:
    messages, n = _messages()
    with GeoResolver() as geo:
        replay = Replay(Analyzer(geo))
        for m in messages:
            replay.read_line(m)
        expected = sorted(_key(a.to_dict()) for a in replay.run())
    assert expected and any(e[4] in ("notify", "throttle", "revoke") for e in expected)

    # One partition in (the worker fixture's access topic): a gateway's own stream keeps each
    # key's order (as keyed topics do).
    asyncio.run(publish(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ACCESS"], messages))
    worker.wait_metric("keywatch_events_analyzed_total", n, timeout=100)
    alerts = worker.env["KEYWATCH_TOPIC_ALERTS"]
    got = asyncio.run(consume(broker.bootstrap, alerts, len(expected), within=30))
    assert sorted(_key(a) for a in got) == expected

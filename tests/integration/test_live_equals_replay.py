"""Live equals replay: the worker on the real broker raises the alerts replay raises, id for id."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from detectors.analyzer import Analyzer
from geoip.resolver import GeoResolver
from tests.support.kafka import consume, create_topics, publish, topics_env
from tests.support.procs import Proc, keywatch_env, running
from worker import shapes
from worker.devstack import EmbeddedBroker
from worker.replay import Replay
from worker.traffic import realistic

pytestmark = pytest.mark.services


def _events() -> list[dict[str, object]]:
    """Two weeks of realistic traffic for 5 keys, one attacked, in event-time order."""
    traffic = realistic(keys=16, days=14, attacks=0, seed=21)
    light = ("office", "human", "sparse", "traveller")  # keeps the test within its time
    traffic.plans = [p for p in traffic.plans if p.shape in light][:5]
    victims = [p for p in traffic.plans if p.shape in shapes.ATTACKABLE]
    rnd = random.Random(4)
    for name, victim in zip(("classic",), victims, strict=False):
        if shapes.suits(name, victim):
            shapes.attack(name, victim, rnd, traffic.start, traffic.days)
    return list(traffic.events(ts_format="ms"))


def _messages() -> tuple[list[bytes], int]:
    """The events as 200-event JSON arrays, in event-time order."""
    events = _events()
    batches = [orjson.dumps(events[i : i + 200]) for i in range(0, len(events), 200)]
    return batches, len(events)


def _spread(sources: int, lag_messages: int) -> tuple[list[tuple[int, bytes]], int]:
    """The events spread over ``sources`` input partitions, as gateways would publish them.

    Each request goes to one gateway node chosen round-robin (a load balancer in front of
    several nodes); each node batches its own requests 200 at a time (Kong's batch queue) to
    its own partition, in its own time order. Node ``p`` runs ``p * lag_messages`` batches
    behind node 0 (a slower node or a backed-up queue), so a key's events reach the worker
    from several partitions, out of event-time order across them.
    """
    events = _events()
    per_node: list[list[bytes]] = []
    for p in range(sources):
        mine = events[p::sources]
        per_node.append([orjson.dumps(mine[i : i + 200]) for i in range(0, len(mine), 200)])
    order: list[tuple[int, int, bytes]] = []
    for p, batches in enumerate(per_node):
        order += [(i + p * lag_messages, p, b) for i, b in enumerate(batches)]
    order.sort(key=lambda t: (t[0], t[1]))
    return [(p, b) for _, p, b in order], len(events)


def _key(alert: dict[str, object]) -> tuple[object, ...]:
    types = tuple(sorted(str(s["type"]) for s in alert["signals"]))  # type: ignore[attr-defined]
    return alert["id"], alert["key_id"], alert["ts"], alert["severity"], alert["action"], types


def _replay(messages: list[bytes]) -> list[tuple[object, ...]]:
    with GeoResolver() as geo:
        replay = Replay(Analyzer(geo))
        for m in messages:
            replay.read_line(m)
        expected = sorted(_key(a.to_dict()) for a in replay.run())
    assert expected and any(e[4] in ("notify", "throttle", "revoke") for e in expected)
    return expected


async def _publish_to(
    bootstrap: str, topic: str, messages: list[tuple[int, bytes]], pause: float
) -> None:
    """Send each message to its partition, ``pause`` seconds apart (gateways flushing)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition, value in messages:
            await producer.send_and_wait(topic, value, partition=partition)
            await asyncio.sleep(pause)
    finally:
        await producer.stop()


async def consume_all(bootstrap: str, topic: str, quiet: float) -> list[dict[str, object]]:
    """Every JSON value on ``topic`` until none has come for ``quiet`` seconds."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", metadata_max_age_ms=1000
    )
    await consumer.start()
    out: list[dict[str, object]] = []
    try:
        while True:
            polled = await consumer.getmany(timeout_ms=int(quiet * 1000))
            if not polled:
                return out
            out += [orjson.loads(r.value) for rs in polled.values() for r in rs]
    finally:
        await consumer.stop()


def test_worker_alerts_equal_replay_alerts(worker: Proc, broker: EmbeddedBroker) -> None:
    messages, n = _messages()
    expected = _replay(messages)

    # One partition in (the worker fixture's access topic): a gateway's own stream keeps each
    # key's order (as keyed topics do).
    asyncio.run(publish(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ACCESS"], messages))
    worker.wait_metric("keywatch_events_analyzed_total", n, timeout=100)
    alerts = worker.env["KEYWATCH_TOPIC_ALERTS"]
    got = asyncio.run(consume(broker.bootstrap, alerts, len(expected), within=30))
    assert sorted(_key(a) for a in got) == expected


@pytest.mark.parametrize("sources, lag", [(4, 3)])
def test_worker_alerts_equal_replay_alerts_across_input_partitions(
    broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path, topic_suffix: str,
    sources: int, lag: int,
) -> None:  # fmt: skip
    """The same data set from several gateway nodes, each to its own partition, some behind."""
    spread, n = _spread(sources, lag)
    expected = _replay([m for _, m in spread])
    env = keywatch_env(
        broker.url, sqlite_url, tmp_path, KEYWATCH_SESSION_TIMEOUT_S="3",
        KEYWATCH_FLUSH_INTERVAL_S="0.05", **topics_env(topic_suffix),
    )  # fmt: skip
    asyncio.run(create_topics(broker.bootstrap, [env["KEYWATCH_TOPIC_ACCESS"]], partitions=sources))
    with running(["worker"], env, tmp_path / "worker.log") as proc:
        asyncio.run(_publish_to(broker.bootstrap, env["KEYWATCH_TOPIC_ACCESS"], spread, pause=0.05))
        try:
            proc.wait_metric("keywatch_events_analyzed_total", n, timeout=100)
        except AssertionError as exc:  # what was held back, and where
            held = ("keywatch_events_held", "keywatch_events_out_of")
            samples = [ln for ln in proc.metrics().splitlines() if ln.startswith(held)]
            raise AssertionError(f"{exc}\n" + "\n".join(samples)) from None
        got = asyncio.run(consume_all(broker.bootstrap, env["KEYWATCH_TOPIC_ALERTS"], quiet=3.0))
    live = sorted(_key(a) for a in got)
    missing = [e for e in expected if e not in live]
    extra = [a for a in live if a not in expected]
    assert (missing, extra) == ([], []), f"{len(expected)} expected"

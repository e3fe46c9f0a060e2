"""End to end on the real broker: a ``keywatch worker`` child process, access logs in, events
counted, dead letters and alerts out."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.support.procs import Proc, keywatch_env, running
from worker.devstack import EmbeddedBroker
from worker.partitioning import partition_for

pytestmark = pytest.mark.services

DAY = 86400.0


def kong(ts: float, key_id: str, ip: str, path: str = "/v1/users") -> dict[str, Any]:
    """A Kong ``kafka-log`` entry as ``kong.log.serialize()`` emits it (fields keywatch reads)."""
    return {
        "started_at": int(ts * 1000),
        "client_ip": ip,
        "request": {"method": "GET", "uri": path, "headers": {"user-agent": "sdk/1.0"}},
        "response": {"status": 200},
        "authenticated_entity": {"id": key_id},
        "consumer": {"custom_id": "acme"},
        "service": {"name": "users"},
    }


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = rf"^{re.escape(name)}(?:\{{{re.escape(want)}\}})? (\S+)$" if want else None
    for line in text.splitlines():
        if pattern and re.match(pattern, line):
            return float(line.rsplit(" ", 1)[1])
        if not pattern and line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_metric(proc: Proc, name: str, target: float, timeout: float = 30, **labels: str) -> float:
    """Poll /metrics until the sample reaches ``target``."""
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = metric(proc.metrics(), name, **labels)
        if value >= target:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{name}{labels} = {value}, expected {target}:\n{proc.output()[-3000:]}")


async def create_topics(bootstrap: str, names: list[str], partitions: int = 1) -> None:
    """Create the external topics up front (gateways own them in production)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def publish(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Send ``values`` to ``topic`` and wait for the broker."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value)
        await producer.flush()
    finally:
        await producer.stop()


async def consume_records(
    bootstrap: str, topic: str, want: int, within: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """The first ``want`` records of ``topic`` (fails on timeout)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", metadata_max_age_ms=1000
    )
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(within):
            while len(out) < want:
                out.append(await consumer.getone())
    finally:
        await consumer.stop()
    return out


async def consume(bootstrap: str, topic: str, want: int, within: float = 30) -> list[Any]:
    """The first ``want`` JSON values of ``topic`` (fails on timeout)."""
    return [orjson.loads(r.value) for r in await consume_records(bootstrap, topic, want, within)]


@pytest.fixture
def worker(
    broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path, topic_suffix: str
) -> Iterator[tuple[Proc, dict[str, str]]]:
    """A running worker with topics of its own."""
    topics = {
        name: f"{name}-{topic_suffix}"
        for name in ("access", "alerts", "dead_letter", "events_by_key", "key_actions")
    }
    env = keywatch_env(
        broker.url, sqlite_url, tmp_path,
        KEYWATCH_SESSION_TIMEOUT_S="3", KEYWATCH_FLUSH_INTERVAL_S="0.05",
        **{f"KEYWATCH_TOPIC_{k.upper()}": v for k, v in topics.items()},
    )  # fmt: skip
    asyncio.run(create_topics(broker.bootstrap, [topics["access"]]))
    with running(["worker"], env, tmp_path / "worker.log") as proc:
        yield proc, topics


def test_kong_batch_counted_and_bad_message_dead_lettered(
    worker: tuple[Proc, dict[str, str]], broker: EmbeddedBroker
) -> None:
    proc, topics = worker
    now = time.time()
    batch = [kong(now - i, f"kid{i % 3}", "8.8.8.8") for i in range(50)]
    bad = b'{"ts": "yesterday", "ip": "8.8.8.8", "key_id": "k1"'  # truncated JSON
    asyncio.run(publish(broker.bootstrap, topics["access"], [orjson.dumps(batch), bad]))

    wait_metric(proc, "keywatch_events_total", 50, format="kong")
    wait_metric(proc, "keywatch_events_analyzed_total", 50)
    letters = asyncio.run(consume(broker.bootstrap, topics["dead_letter"], 1))
    assert letters[0]["reason"] == "invalid_json"
    assert letters[0]["source"] == topics["access"]
    assert metric(proc.metrics(), "keywatch_dead_letters_total", reason="invalid_json") == 1

    # Each key's profile reached the changelog once, on the key's own partition.
    changelog = f"{proc.env['KEYWATCH_APP_ID']}-profiles-changelog"
    records = asyncio.run(consume_records(broker.bootstrap, changelog, 3))
    assert sorted(r.key for r in records) == [b"kid0", b"kid1", b"kid2"]
    for r in records:
        assert r.partition == partition_for(r.key.decode(), 4)


def test_profiles_survive_a_restart_and_a_new_country_burst_alerts(
    broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path, topic_suffix: str
) -> None:
    names = ("access", "alerts", "dead_letter", "events_by_key", "key_actions")
    topics = {name: f"{name}-{topic_suffix}" for name in names}
    env = keywatch_env(
        broker.url, sqlite_url, tmp_path, KEYWATCH_SESSION_TIMEOUT_S="3",
        **{f"KEYWATCH_TOPIC_{k.upper()}": v for k, v in topics.items()},
    )  # fmt: skip
    asyncio.run(create_topics(broker.bootstrap, [topics["access"]]))
    now = time.time()
    # Four days of ordinary use from Germany, every 15 minutes, ending an hour ago.
    learned = [kong(now - 3600 - i * 900, "k-travel", "5.9.0.1") for i in range(384, 0, -1)]
    with running(["worker"], env, tmp_path / "first.log") as first:
        asyncio.run(publish(broker.bootstrap, topics["access"], [orjson.dumps(learned)]))
        wait_metric(first, "keywatch_events_analyzed_total", len(learned))
        time.sleep(1.5)  # one checkpoint: the profile is on the changelog
    # A new process of the same app recovers the profile from the changelog: the burst from a
    # new country can only alert if the learned history came back.
    burst = [kong(now - 30 + i, "k-travel", "77.88.8.8") for i in range(20)]
    for e in burst:  # another client: the owner's own SDK abroad would only be logged (travel)
        e["request"]["headers"]["user-agent"] = "python-requests/2.31"
    with running(["worker"], env, tmp_path / "second.log") as second:
        asyncio.run(publish(broker.bootstrap, topics["access"], [orjson.dumps(burst)]))
        (alert,) = asyncio.run(consume(broker.bootstrap, topics["alerts"], 1))
        wait_metric(second, "keywatch_events_analyzed_total", len(burst))
        time.sleep(1)
        # Only the burst was analyzed here: the history came back from the changelog, not from
        # replaying the events (their offsets were committed after the checkpoint).
        assert metric(second.metrics(), "keywatch_events_analyzed_total") == len(burst)
    assert alert["kind"] == "anomaly" and alert["key_id"] == "k-travel"
    assert "geo.new_country" in {s["type"] for s in alert["signals"]}
    assert alert["severity"] in ("medium", "high", "critical")
    assert alert["action"] in ("log", "notify", "throttle", "revoke")
    assert alert["ts"].endswith("Z") and alert["summary"]

"""The ingest consumer on the real broker: compressed batches, undecodable records, restarts."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka.codec
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.ingest import Capture
from worker.agents.ingest import IngestConsumer, IngestStage
from worker.devstack import EmbeddedBroker
from worker.keycache import KeyCache
from worker.keystore.store import KeyStore
from worker.metrics import Metrics
from worker.settings import Settings, Topics

pytestmark = pytest.mark.services

TS = 1795000000000


def native(i: int) -> bytes:
    return orjson.dumps({"ts": TS + i, "ip": "8.8.8.8", "key_id": f"k{i % 5}", "path": "/v1"})


def consumer_for(broker: EmbeddedBroker, topic: str, sqlite_url: str) -> tuple[Any, Capture]:
    settings = Settings(
        broker=f"kafka://{broker.bootstrap}", partitions=2, topics=Topics(access=topic),
        app_id=f"t-{topic}", fetch_max_wait_ms=100,
    )  # fmt: skip
    store = KeyStore(sqlite_url)
    cap, metrics = Capture(), Metrics()
    cache = KeyCache(store.find_many_by_hash, store.find_many)
    stage = IngestStage(settings, metrics, cache, cap.send, cap.dead_letter)
    kapp = SimpleNamespace(settings=settings, metrics=metrics, dead_letter=cap.dead_letter,
                           consuming=True)  # fmt: skip
    return IngestConsumer(kapp, stage), cap  # type: ignore[arg-type]


async def produce(
    broker: EmbeddedBroker, topic: str, values: list[bytes], codec: str | None
) -> None:
    """One producer batch per call (linger: all values share a compressed record batch)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=200
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, v, partition=0) for v in values]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def until(predicate: Any) -> None:
    async with asyncio.timeout(30):
        while not predicate():  # noqa: ASYNC110 (a captured list, nothing to wait on)
            await asyncio.sleep(0.05)


def test_cramjam_is_a_dependency() -> None:
    """aiokafka decodes lz4, zstd and snappy only with cramjam installed."""
    meta = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert any(d.startswith("cramjam") for d in meta["project"]["dependencies"])
    assert aiokafka.codec.has_lz4() and aiokafka.codec.has_zstd() and aiokafka.codec.has_snappy()


async def test_compressed_batches_are_consumed(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str
) -> None:
    topic = f"access-codec-{topic_suffix}"
    codecs = ["lz4", "zstd", "snappy", "gzip"]
    for n, codec in enumerate(codecs):
        await produce(broker, topic, [native(n * 10 + i) for i in range(10)], codec)
    consumer, cap = consumer_for(broker, topic, sqlite_url)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(cap.events()) >= 40)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(e.ts for e in cap.events()) == [(TS + i) / 1000 for i in range(40)]
    assert cap.letters == []


async def test_an_undecodable_batch_is_dead_lettered_and_consumption_goes_on(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The review's reproduction: lz4 without cramjam used to kill the task (and the restart)."""
    topic = f"access-bad-{topic_suffix}"
    await produce(broker, topic, [native(0), native(1)], None)
    await produce(broker, topic, [native(100 + i) for i in range(3)], "lz4")
    await produce(broker, topic, [native(2), native(3)], None)
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)  # the consumer cannot decode lz4 now
    consumer, cap = consumer_for(broker, topic, sqlite_url)
    task = asyncio.create_task(consumer.run())
    try:
        await until(lambda: len(cap.events()) >= 4 and len(cap.letters) >= 3)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sorted(e.ts for e in cap.events()) == [(TS + i) / 1000 for i in range(4)]
    assert [letter["reason"] for letter in cap.letters] == ["undecodable_record"] * 3
    assert sorted(letter["payload"]["offset"] for letter in cap.letters) == [2, 3, 4]
    assert "lz4" in cap.letters[0]["detail"].lower()

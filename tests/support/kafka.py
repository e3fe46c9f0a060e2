"""Kafka in tests: a test's own topics, creating them, publishing, and reading topics back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

TOPIC_NAMES = ("ACCESS", "ALERTS", "KEY_ACTIONS", "LEAKS", "DEAD_LETTER", "EVENTS_BY_KEY",
               "CODE_PUSH", "FEEDBACK")  # fmt: skip

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


def topics_env(suffix: str) -> dict[str, str]:
    """``KEYWATCH_TOPIC_*`` variables giving a test its own topics on a shared broker."""
    return {f"KEYWATCH_TOPIC_{n}": f"{n.lower()}-{suffix}" for n in TOPIC_NAMES}


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int = 1) -> None:
    """Create external topics up front (gateways own them in production)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def publish(
    bootstrap: str, topic: str, values: Sequence[Any], key: bytes | None = None
) -> None:
    """Send JSON values (or raw bytes), in order, and wait for the broker's acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            await producer.send_and_wait(topic, raw, key=key)
    finally:
        await producer.stop()


async def consume_records(
    bootstrap: str, topic: str, want: int, within: float = 30
) -> list[Record]:
    """The first ``want`` records of ``topic`` (fails when they have not all come ``within``)."""
    out = await collect_records(bootstrap, topic, lambda got: len(got) >= want, within)
    assert len(out) >= want, f"only {len(out)} of {want} messages arrived on {topic} in {within}s"
    return out[:want]


async def consume(bootstrap: str, topic: str, want: int, within: float = 30) -> list[Any]:
    """The first ``want`` JSON values of ``topic`` (fails on timeout)."""
    return [orjson.loads(r.value) for r in await consume_records(bootstrap, topic, want, within)]


async def collect_records(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Record]], bool],
    within: float,
) -> list[Record]:
    """Records of ``topic`` from the start until ``until(records)`` holds or ``within`` seconds
    pass (then returns what it has: the caller asserts)."""
    found: list[Record] = []
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, metadata_max_age_ms=1000)  # fmt: skip
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + within
        while not until(found) and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                found += records
    finally:
        await consumer.stop()
    return found


async def collect(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], within: float
) -> list[Any]:
    """JSON values of ``topic`` (raw bytes where a value is not JSON) until ``until(values)``
    holds or ``within`` seconds pass (then returns what it has: the caller asserts)."""
    values: list[Any] = []

    def decoded(records: list[Record]) -> bool:
        values.extend(_loads(r.value) for r in records[len(values) :])
        return until(values)

    await collect_records(bootstrap, topic, decoded, within)
    return values


async def collect_count(bootstrap: str, topic: str, want: int, within: float = 60) -> list[Any]:
    """At least ``want`` JSON values of ``topic``, or what came ``within`` seconds."""
    return await collect(bootstrap, topic, lambda got: len(got) >= want, within)


async def read_to_end(bootstrap: str, topic: str, idle_ms: int = 1500) -> list[Record]:
    """Every record of ``topic`` from the start, until none comes for ``idle_ms``."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    found: list[Record] = []
    try:
        while batch := await consumer.getmany(timeout_ms=idle_ms):
            for records in batch.values():
                found += records
    finally:
        await consumer.stop()
    return found


async def reported_end(bootstrap: str, topic: str, partitions: int) -> int:
    """The sum of the broker's reported end offsets over the topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """The sum of ``group``'s committed offsets over ``topic``'s partitions (0 before any).

    Asked by a consumer that joins nothing (the admin client's OffsetFetch version is one the
    embedded broker does not parse)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()
    return sum(o for o in offsets if o is not None and o > 0)


def _loads(raw: bytes | None) -> Any:
    try:
        return orjson.loads(raw or b"null")
    except orjson.JSONDecodeError:
        return raw

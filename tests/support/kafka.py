"""Reading topics back in tests."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from worker.devstack import EmbeddedBroker


async def read_records(broker: EmbeddedBroker, topic: str, count: int) -> list[ConsumerRecord]:
    """Read ``count`` records from the start of ``topic`` (fails if they stop arriving)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest",
        group_id=None, enable_auto_commit=False,
    )  # fmt: skip
    await consumer.start()
    try:
        out: list[ConsumerRecord] = []
        while len(out) < count:
            batches = await consumer.getmany(timeout_ms=10_000)
            assert batches, f"only {len(out)} of {count} messages arrived"
            for records in batches.values():
                out += records
        return out
    finally:
        await consumer.stop()

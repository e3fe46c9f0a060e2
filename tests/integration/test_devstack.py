"""The embedded broker starts, serves produce/consume, and stops without leftovers."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from worker.devstack import EmbeddedBroker, wait_for_port


async def test_broker_round_trip(broker: EmbeddedBroker, topic_suffix: str) -> None:
    topic = f"roundtrip-{topic_suffix}"
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    assert (msg.key, msg.value) == (b"k", b"hello")


def test_stop_frees_the_port() -> None:
    b = EmbeddedBroker().start()
    assert b.running
    b.stop()
    assert not b.running
    assert not wait_for_port("127.0.0.1", b.port, 0.5)

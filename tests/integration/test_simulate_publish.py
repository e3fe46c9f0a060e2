"""``keywatch simulate --topic`` publishes batched native events to the real (Tansu) broker."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tests.support.kafka import consume_records
from worker.commands.simulate import command
from worker.devstack import EmbeddedBroker
from worker.ingest import parse_message
from worker.simulate import simulate

pytestmark = pytest.mark.services


async def consume(broker: EmbeddedBroker, topic: str, count: int) -> list[bytes]:
    """Read ``count`` message values from the start of ``topic``."""
    return [r.value for r in await consume_records(broker.bootstrap, topic, count)]


def test_batches_of_native_events(broker: EmbeddedBroker, topic_suffix: str) -> None:
    topic = f"simulate-{topic_suffix}"
    args = ["--keys", "3", "--days", "3", "--seed", "2", "--topic", topic, "--batch", "500"]
    result = CliRunner().invoke(command, args, env={"KEYWATCH_BROKER": broker.url})
    assert result.exit_code == 0, result.output
    expected = list(simulate(3, 3, seed=2).events())
    n_messages = -(-len(expected) // 500)
    assert f"published {n_messages} message(s) to {topic}" in result.stderr
    assert result.stdout == ""  # --topic without --out writes no file to stdout
    values = asyncio.run(consume(broker, topic, n_messages))
    decoded: list[Any] = [orjson.loads(v) for v in values]
    assert all(isinstance(d, list) and len(d) <= 500 for d in decoded)
    # Unkeyed messages spread over the topic's partitions: order holds within each batch only.
    chunks = [expected[i : i + 500] for i in range(0, len(expected), 500)]
    assert sorted(decoded, key=lambda d: int(d[0]["request_id"].split("-")[1], 16)) == chunks
    # the worker's ingest accepts them as they are (any full batch: partitions reorder them)
    full = next(v for v, d in zip(values, decoded, strict=True) if len(d) == 500)
    parsed = parse_message(full)
    assert parsed.fmt == "native" and len(parsed.events) == 500 and not parsed.rejects


def test_unreachable_broker_is_one_clear_error() -> None:
    args = ["--keys", "2", "--days", "3", "--topic", "t"]
    result = CliRunner().invoke(command, args, env={"KEYWATCH_BROKER": "kafka://127.0.0.1:1"})
    assert result.exit_code == 1
    assert "cannot reach the broker 127.0.0.1:1" in result.output

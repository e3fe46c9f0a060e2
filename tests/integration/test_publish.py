"""``keywatch publish`` against the real (embedded Tansu) broker, read back with aiokafka."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from tests.support.kafka import consume_records
from worker.commands.publish import command
from worker.devstack import EmbeddedBroker

pytestmark = pytest.mark.services

EVENTS = [
    {"ts": 1_795_316_645_000 + i, "key_id": f"k{i % 2}", "ip": "81.2.69.160", "path": f"/v1/{i}"}
    for i in range(5)
]


async def consume(broker: EmbeddedBroker, topic: str, count: int) -> list[tuple[Any, Any]]:
    """Read ``count`` messages from the start of ``topic`` as (key, decoded value)."""
    records = await consume_records(broker.bootstrap, topic, count)
    return [(r.key, orjson.loads(r.value)) for r in records]


def run(broker: EmbeddedBroker, *args: str, stdin: bytes | None = None) -> Any:
    return CliRunner().invoke(command, list(args), env={"KEYWATCH_BROKER": broker.url}, input=stdin)


def test_one_message_per_line_with_bad_line_skipped(
    broker: EmbeddedBroker, topic_suffix: str, tmp_path: Path
) -> None:
    topic = f"publish-lines-{topic_suffix}"
    path = tmp_path / "access.jsonl"
    lines = [orjson.dumps(e) for e in EVENTS[:3]]
    path.write_bytes(lines[0] + b"\n{broken\n\n" + lines[1] + b"\n" + lines[2] + b"\n")
    result = run(broker, str(path), "--topic", topic, "--key-field", "key_id")
    assert result.exit_code == 0, result.output
    assert f"{path}:2: invalid JSON" in result.stderr
    assert "published 3 message(s), 3 event(s)" in result.stdout
    got = asyncio.run(consume(broker, topic, 3))
    assert sorted((k, v["path"]) for k, v in got) == [
        (b"k0", "/v1/0"),
        (b"k0", "/v1/2"),
        (b"k1", "/v1/1"),
    ]


def test_batched_arrays_from_gz_and_array_file(
    broker: EmbeddedBroker, topic_suffix: str, tmp_path: Path
) -> None:
    topic = f"publish-batch-{topic_suffix}"
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\n".join(orjson.dumps(e) for e in EVENTS[:3])))
    arr = tmp_path / "b.json"
    arr.write_bytes(orjson.dumps(EVENTS[3:]))
    result = run(broker, str(gz), str(arr), "--topic", topic, "--batch", "2")
    assert result.exit_code == 0, result.output
    assert "published 3 message(s), 5 event(s)" in result.stdout
    got = asyncio.run(consume(broker, topic, 3))
    values = [v for _, v in got]
    assert all(isinstance(v, list) and len(v) <= 2 for v in values)
    assert sorted(e["path"] for v in values for e in v) == [e["path"] for e in EVENTS]


def test_stdin_array_file_and_lines_of_arrays(broker: EmbeddedBroker, topic_suffix: str) -> None:
    topic = f"publish-stdin-{topic_suffix}"
    result = run(broker, "-", "--topic", topic, stdin=orjson.dumps(EVENTS) + b"\n")
    assert result.exit_code == 0, result.output
    assert "published 5 message(s), 5 event(s)" in result.stdout
    got = asyncio.run(consume(broker, topic, 5))
    assert sorted(v["path"] for _, v in got) == [e["path"] for e in EVENTS]
    kong_style = f"publish-arrays-{topic_suffix}"
    lines = orjson.dumps(EVENTS[:2]) + b"\n" + orjson.dumps(EVENTS[2:]) + b"\n"
    result = run(broker, "-", "--topic", kong_style, stdin=lines)
    assert "published 2 message(s), 5 event(s)" in result.stdout
    got = asyncio.run(consume(broker, kong_style, 2))
    assert sorted(len(v) for _, v in got) == [2, 3]


def test_user_errors_are_one_line(broker: EmbeddedBroker, tmp_path: Path) -> None:
    missing = run(broker, str(tmp_path / "nope.jsonl"), "--topic", "t")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: ") and "Traceback" not in missing.output
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{oops\n")
    strict = run(broker, str(bad), "--topic", "t", "--strict")
    assert strict.exit_code == 1 and "--strict" in strict.stderr
    env = CliRunner().invoke(
        command, [str(bad), "--topic", "t"], env={"KEYWATCH_BROKER": "http://x"}
    )
    assert env.exit_code == 1 and "KEYWATCH_BROKER" in env.stderr

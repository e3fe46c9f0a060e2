"""``keywatch publish``: send log lines/objects to a Kafka topic (gateways without a Kafka plugin).

Input: JSON lines, or a file holding one JSON array, or ``-`` for stdin; ``.gz`` is read directly.
With ``--batch 1`` (default) every line becomes one message exactly as received; with ``--batch N``
up to N events are grouped per message as a JSON array (arrays in the input are flattened).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
import orjson

from core.errors import ConfigError
from worker.settings import Settings

GZIP_MAGIC = b"\x1f\x8b"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # the parser's default per-message limit


@dataclass(slots=True)
class Item:
    """One input record: where it came from, its parsed value and its bytes as received."""

    where: str
    value: Any
    raw: bytes


@dataclass(slots=True)
class Stats:
    """What a run did, for the summary line."""

    messages: int = 0
    events: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _open(name: str) -> Iterator[IO[bytes]]:
    """The input as bytes: stdin for ``-``, gunzipped for ``.gz`` files or gzip content."""
    if name == "-":
        stream: IO[bytes] = click.get_binary_stream("stdin")
    else:
        try:
            stream = Path(name).open("rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise click.ClickException(f"{name}: {exc.strerror or exc}") from exc
    try:
        peek = getattr(stream, "peek", None)
        head = peek(2)[:2] if peek is not None else b""
        if name.endswith(".gz") or head == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=stream) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield stream
    finally:
        if name != "-":
            stream.close()


def read_items(name: str, stats: Stats, strict: bool) -> Iterator[Item]:
    """Records of one input; bad lines are reported (or fatal with ``strict``) and skipped."""
    with _open(name) as stream:
        try:
            first = stream.read(1)
            while first.isspace():
                first = stream.read(1)
            if first == b"[":  # one JSON array, or JSON lines of arrays (Kong batches)
                body = first + stream.read()
                whole = _whole_array(name, body)
                yield from whole if whole is not None else _from_lines(name, body, stats, strict)
                return
            yield from _from_lines(name, first + stream.read(), stats, strict)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise click.ClickException(f"{name}: cannot read: {exc}") from exc


def _from_lines(name: str, body: bytes, stats: Stats, strict: bool) -> Iterator[Item]:
    for lineno, line in enumerate(body.splitlines(), start=1):
        line = line.strip()
        if line:
            item = _decode(f"{name}:{lineno}", line, stats, strict)
            if item is not None:
                yield item


def _whole_array(name: str, body: bytes) -> list[Item] | None:
    """The elements of a file holding one JSON array, None when it is not one."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, list):
        return None
    return [Item(f"{name}[{i}]", v, orjson.dumps(v)) for i, v in enumerate(value)]


def _decode(where: str, raw: bytes, stats: Stats, strict: bool) -> Item | None:
    try:
        return Item(where, orjson.loads(raw), raw)
    except orjson.JSONDecodeError as exc:
        problem = f"{where}: invalid JSON ({exc.msg})"
    if strict:
        raise click.ClickException(problem + "; stopping (--strict)")
    stats.skipped += 1
    click.echo(f"{problem}, skipped", err=True)
    return None


def _key_of(value: Any, key_field: str | None) -> bytes | None:
    if key_field is None:
        return None
    first = value[0] if isinstance(value, list) and value else value
    key = first.get(key_field) if isinstance(first, dict) else None
    return str(key).encode() if key is not None else None


def messages(
    items: Iterator[Item], batch: int, key_field: str | None, stats: Stats
) -> Iterator[tuple[bytes | None, bytes]]:
    """(Kafka key, value) pairs: one per item, or JSON arrays of up to ``batch`` events per key."""
    if batch <= 1:
        for item in items:
            stats.events += len(item.value) if isinstance(item.value, list) else 1
            yield _key_of(item.value, key_field), item.raw
        return
    pending: dict[bytes | None, list[Any]] = {}
    for item in items:
        for value in item.value if isinstance(item.value, list) else [item.value]:
            key = _key_of(value, key_field)
            group = pending.setdefault(key, [])
            group.append(value)
            stats.events += 1
            if len(group) >= batch:
                yield key, orjson.dumps(pending.pop(key))
    for key, group in pending.items():
        yield key, orjson.dumps(group)


async def publish(
    bootstrap: list[str], topic: str, pairs: Iterator[tuple[bytes | None, bytes]], stats: Stats
) -> None:
    """Send every pair to ``topic`` and wait for all acknowledgements."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=MAX_MESSAGE_BYTES, linger_ms=5
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise click.ClickException(f"cannot reach the broker {','.join(bootstrap)}: {exc}") from exc
    try:
        pending = []
        for key, value in pairs:
            pending.append(await producer.send(topic, value=value, key=key))
            stats.messages += 1
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    except KafkaError as exc:
        raise click.ClickException(f"publishing to {topic} failed: {exc}") from exc
    finally:
        await producer.stop()


@click.command("publish")
@click.argument("files", nargs=-1, required=True, type=str)
@click.option("--topic", "-t", required=True, help="Kafka topic, e.g. gateway.access.")
@click.option(
    "--batch",
    type=click.IntRange(1, 100_000),
    default=1,
    show_default=True,
    help="Events per message; above 1, events are grouped into JSON arrays (as Kong batches).",
)
@click.option(
    "--key-field",
    default=None,
    help="Use this field of each event as the Kafka message key (e.g. key_id).",
)
@click.option("--strict", is_flag=True, help="Stop at the first invalid line instead of skipping.")
def command(
    files: tuple[str, ...], topic: str, batch: int, key_field: str | None, strict: bool
) -> None:
    """Publish JSON lines, JSON array files or stdin (-) to a Kafka topic; .gz files are read."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    stats = Stats()

    def items() -> Iterator[Item]:
        for name in files:
            yield from read_items(name, stats, strict)

    pairs = messages(items(), batch, key_field, stats)
    asyncio.run(publish(settings.broker_urls, topic, pairs, stats))
    click.echo(
        f"published {stats.messages} message(s), {stats.events} event(s) to {topic}; "
        f"skipped {stats.skipped} invalid line(s)"
    )

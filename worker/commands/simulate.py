"""``keywatch simulate``: simulated gateway traffic (native format) to JSON lines or a topic.

``--topic T`` publishes to Kafka (``KEYWATCH_BROKER``) with ``--batch`` events per message as a
JSON array, the way batching gateways (Kong's kafka-log) send them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import click
import orjson

from core.errors import ConfigError
from worker.outputs import check_writable
from worker.settings import Settings
from worker.simulate import ATTACKS, DEFAULT_START, Simulation, simulate


def _start(value: str | None) -> float:
    if not value:
        return DEFAULT_START
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value}") from exc


def batches(events: Iterable[dict[str, Any]], size: int) -> Iterator[tuple[None, bytes]]:
    """(Kafka key, value) pairs: JSON arrays of up to ``size`` events, in event-time order."""
    batch: list[dict[str, Any]] = []
    for ev in events:
        batch.append(ev)
        if len(batch) >= size:
            yield None, orjson.dumps(batch)
            batch = []
    if batch:
        yield None, orjson.dumps(batch)


def _publish(sim: Simulation, topic: str, size: int) -> str:
    """Publish every event; returns the summary's tail."""
    from worker.commands.publish import Stats, publish

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    stats = Stats()
    asyncio.run(publish(settings.broker_urls, topic, batches(sim.events(), size), stats))
    return f"; published {stats.messages} message(s) to {topic}"


def _write(sim: Simulation, out: str) -> None:
    stream = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
    try:
        for ev in sim.events():
            stream.write(orjson.dumps(ev) + b"\n")
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()


def _write_labels(sim: Simulation, path: str) -> None:
    with open(path, "wb") as f:
        for lb in sim.labels:
            label = {"key_id": lb.key_id, "attack": lb.attack, "start": lb.start, "end": lb.end}
            f.write(orjson.dumps(label) + b"\n")


@click.command("simulate")
@click.option("--keys", default=50, show_default=True, help="Number of API keys.")
@click.option("--days", default=7, show_default=True, help="Days of traffic (>= 3).")
@click.option(
    "--attacks",
    default=0,
    show_default=True,
    help=f"Attacks per class on the last two days ({', '.join(ATTACKS)}), each on its own key.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed (same seed, same output).")
@click.option("--out", default=None, help="Output JSONL file; - = stdout (default unless --topic).")
@click.option("--topic", default=None, help="Publish to this Kafka topic (e.g. gateway.access).")
@click.option(
    "--batch",
    type=click.IntRange(1, 100_000),
    default=200,
    show_default=True,
    help="With --topic: events per message (a JSON array).",
)
@click.option("--labels", "labels", default=None, help="Also write ground-truth labels (JSONL).")
@click.option("--start", default=None, help="Start time, ISO 8601 (default 2026-11-02T00:00Z).")
def command(
    keys: int,
    days: int,
    attacks: int,
    seed: int,
    out: str | None,
    topic: str | None,
    batch: int,
    labels: str | None,
    start: str | None,
) -> None:
    """Generate realistic gateway traffic with labelled attacks (to a file, stdout or a topic)."""
    check_writable(out, "--out")
    check_writable(labels, "--labels")
    try:
        sim = simulate(keys, days, attacks, seed, _start(start))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if out is not None or topic is None:
        _write(sim, out or "-")
    published = _publish(sim, topic, batch) if topic else ""
    if labels:
        _write_labels(sim, labels)
    click.echo(f"{keys} keys, {days} days, {len(sim.labels)} attacks{published}", err=True)

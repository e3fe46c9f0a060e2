"""``keywatch simulate``: simulated gateway traffic (native format) to JSON lines or a topic.

``--realistic`` generates ``worker.traffic``'s benign key shapes (bursty sessions, CI fleets,
travellers, daylight saving, launches, weekly/monthly jobs, rotation, sparse keys) and its attack
classes; without it, the small classic simulation (office/server/batch keys, five attacks).

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
from worker.traffic import ATTACKS as REALISTIC_ATTACKS
from worker.traffic import REALISTIC_START, Traffic, realistic

Generated = Simulation | Traffic


def _start(value: str | None, default: float = DEFAULT_START) -> float:
    if not value:
        return default
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


def _publish(sim: Generated, topic: str, size: int) -> str:
    """Publish every event; returns the summary's tail."""
    from worker.commands.publish import Stats, publish

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    stats = Stats()
    asyncio.run(publish(settings.broker_urls, topic, batches(sim.events(), size), stats))
    return f"; published {stats.messages} message(s) to {topic}"


def _write(sim: Generated, out: str) -> None:
    stream = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
    try:
        for ev in sim.events():
            stream.write(orjson.dumps(ev) + b"\n")
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()


def _write_labels(sim: Generated, path: str) -> None:
    with open(path, "wb") as f:
        if isinstance(sim, Traffic):  # one label per key: its benign shape, and any attack
            for tl in sim.labels:
                row: dict[str, object] = {"key_id": tl.key_id, "shape": tl.shape}
                row["attack"] = tl.attack
                if tl.attack is not None:
                    row.update(start=tl.start, end=tl.end)
                f.write(orjson.dumps(row) + b"\n")
            return
        for lb in sim.labels:
            label = {"key_id": lb.key_id, "attack": lb.attack, "start": lb.start, "end": lb.end}
            f.write(orjson.dumps(label) + b"\n")


@click.command("simulate")
@click.option(
    "--realistic",
    "realistic_",
    is_flag=True,
    help="Realistic key shapes and attack classes "
    f"({', '.join(REALISTIC_ATTACKS)}; attacks in the last week; >= 14 days).",
)
@click.option("--keys", default=50, show_default=True, help="Number of API keys.")
@click.option("--days", default=7, show_default=True, help="Days of traffic (>= 3).")
@click.option(
    "--attacks",
    default=0,
    show_default=True,
    help=f"Attacks per class ({', '.join(ATTACKS)} on the last two days), each on its own key.",
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
@click.option(
    "--start",
    default=None,
    help="Start time, ISO 8601 (default 2026-11-02T00:00Z; 2026-10-19 with --realistic).",
)
def command(
    realistic_: bool,
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
        sim: Generated
        if realistic_:
            sim = realistic(keys, days, attacks, seed, _start(start, REALISTIC_START))
        else:
            sim = simulate(keys, days, attacks, seed, _start(start))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if out is not None or topic is None:
        _write(sim, out or "-")
    published = _publish(sim, topic, batch) if topic else ""
    if labels:
        _write_labels(sim, labels)
    attacked = sum(1 for lb in sim.labels if lb.attack is not None)
    click.echo(f"{keys} keys, {days} days, {attacked} attacks{published}", err=True)

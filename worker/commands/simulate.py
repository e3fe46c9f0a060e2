"""``keywatch simulate``: write simulated gateway traffic (native format, JSON lines)."""

from __future__ import annotations

import sys
from datetime import datetime

import click
import orjson

from worker.simulate import ATTACKS, DEFAULT_START, simulate


def _start(value: str | None) -> float:
    if not value:
        return DEFAULT_START
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {value}") from exc


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
@click.option("--out", "out", default="-", show_default=True, help="Output JSONL file, - = stdout.")
@click.option("--labels", "labels", default=None, help="Also write ground-truth labels (JSONL).")
@click.option("--start", default=None, help="Start time, ISO 8601 (default 2026-11-02T00:00Z).")
def command(
    keys: int, days: int, attacks: int, seed: int, out: str, labels: str | None, start: str | None
) -> None:
    """Generate realistic gateway traffic with labelled attacks."""
    try:
        sim = simulate(keys, days, attacks, seed, _start(start))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    stream = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
    try:
        for ev in sim.events():
            stream.write(orjson.dumps(ev) + b"\n")
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
    if labels:
        with open(labels, "wb") as f:
            for lb in sim.labels:
                f.write(
                    orjson.dumps(
                        {"key_id": lb.key_id, "attack": lb.attack, "start": lb.start, "end": lb.end}
                    )
                    + b"\n"
                )
    click.echo(f"{keys} keys, {days} days, {len(sim.labels)} attacks", err=True)

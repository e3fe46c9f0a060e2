"""``keywatch replay``: the worker's detection over log files, offline, in event-time order."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.errors import InputError, KeyStoreError
from detectors.analyzer import Analyzer
from detectors.model import Alert
from detectors.policy_file import load_policy
from geoip.resolver import GeoResolver
from worker.ingest import FORMATS, KeyInfo
from worker.ingest.ips import configure as configure_proxies
from worker.outputs import check_writable
from worker.replay import Replay, open_input, summary_lines
from worker.settings import Settings


def _store_lookups(url: str) -> tuple[Any, Callable[[str], KeyInfo | None], Any]:
    """Key-store lookups by hash and by id (KeyInfo or None), and the store to close."""
    from worker.keystore.links import find_many_identities
    from worker.keystore.store import KeyStore

    store = KeyStore(url, create=False)

    def info(rec: Any) -> KeyInfo:
        return KeyInfo(rec.key_id, rec.account_id, rec.environment, rec.status)

    def by_hash(key_hash: str) -> KeyInfo | None:
        rec = store.find_by_hash(key_hash)
        return info(rec) if rec is not None else None

    def by_id(key_id: str) -> KeyInfo | None:
        rec = find_many_identities(store, [key_id]).get(key_id)  # a key id or a linked id
        return info(rec) if rec is not None else None

    return by_hash, by_id, store


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        yield progress


def _read(replay: Replay, files: tuple[str, ...], progress: Progress, console: Console) -> None:
    task = progress.add_task("reading", total=None)
    for name in files:
        try:
            stream: IO[bytes] = open_input(name)
        except InputError as exc:
            raise click.BadParameter(str(exc), param_hint="FILE") from exc
        try:
            replay.read_stream(stream, lambda n: progress.advance(task, n))
        except InputError as exc:
            console.print(
                f"keywatch: warning: {name}: {exc}", markup=False, highlight=False, soft_wrap=True
            )
        finally:
            if name != "-":
                stream.close()


async def _apply(settings: Settings, alerts: list[Alert], ttl_s: float) -> list[str]:
    """Throttle/revoke through the key service as the response agent would (same reason text,
    same idempotency per alert), without its retry-forever; one line per action."""
    from worker.brokerwait import reachable
    from worker.keystore.service import command_service
    from worker.response.executor import plan_action

    # no broker: the announcements wait in the outbox for a worker instead of 3 s each
    listening = await reachable(settings.broker_urls, 1.0)
    done: list[str] = []
    async with command_service(settings, announce=listening, create=False) as service:
        for alert in alerts:
            plan = plan_action(alert)
            if plan is None:
                continue
            try:
                if plan.action == "revoke":
                    change = await service.revoke(
                        plan.key_id, plan.reason, actor="keywatch-replay", alert_id=plan.alert_id
                    )
                else:
                    change = await service.throttle(
                        plan.key_id, ttl_s, plan.reason,
                        actor="keywatch-replay", alert_id=plan.alert_id,
                    )  # fmt: skip
                state = "applied" if change.changed else "unchanged"
            except KeyStoreError as exc:
                state = f"failed ({exc})"
            done.append(f"{plan.action} {plan.key_id}: {state}")
    if not listening and done:
        done.append(f"no broker at {settings.broker}: key-actions announcements are queued")
    return done


@click.command("replay")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", *sorted(FORMATS)]),
    default="auto",
    show_default=True,
    help="Access-log format of every message (auto: detected per message).",
)
@click.option("--out", default="-", show_default=True, help="Alerts as JSON lines; - = stdout.")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Escalation policy (TOML); default KEYWATCH_POLICY, else the built-in policy.",
)
@click.option("--report", type=click.Path(dir_okay=False), help="Also write an HTML report.")
@click.option(
    "--apply", is_flag=True, help="Throttle/revoke keys as alerted (default: act on nothing)."
)
def command(
    files: tuple[str, ...],
    fmt: str,
    out: str,
    policy_file: Path | None,
    report: str | None,
    apply: bool,
) -> None:
    """Replay access logs FILE... (JSON lines, one message per line; .gz read directly; - = stdin)
    through the worker's parsing, profiles, detectors and policy, in event-time order.

    Writes alerts (JSONL) and prints a summary. Key hashes resolve through the key store when
    KEYWATCH_DATABASE_URL is set (else such events are rejected as unknown_key). Reads all events
    into memory (~300 bytes each) before sorting them.
    """
    check_writable(out, "--out")
    check_writable(report, "--report")
    settings = Settings.from_env()
    configure_proxies(settings.trusted_proxies)  # the worker's X-Forwarded-For reading
    policy = load_policy(policy_file or settings.policy_file, dry_run=settings.dry_run)
    console = Console(stderr=True)
    by_hash = by_id = store = None
    if os.environ.get("KEYWATCH_DATABASE_URL"):
        by_hash, by_id, store = _store_lookups(settings.database_url)
    geoip = (settings.geoip_city_db, settings.geoip_asn_db)
    with GeoResolver(*geoip, classes=settings.network_classes) as geo:
        replay = Replay(Analyzer(geo, policy), fmt, by_hash, by_id)
        try:
            alerts = _run(replay, files, out, console)
        finally:
            if store is not None:
                store.close()
        lines = summary_lines(replay.stats, alerts)
        if report:
            from worker.report import render

            Path(report).write_text(render(replay.key_reports(alerts), lines), encoding="utf-8")
            lines.append(f"report: {report}")
    if apply:
        lines += asyncio.run(_apply(settings, alerts, policy.throttle_ttl_s))
    for line in lines:
        click.echo(line, err=out == "-")
    if replay.stats.events == 0:
        # nothing was analysed: a wrong --format, an empty file or a key store that knows none
        # of the key hashes; exiting 0 would read as "no anomaly found"
        raise InputError(
            f"no usable event in {', '.join(files)} "
            f"({replay.stats.lines} message(s) read, none usable)"
        )


def _run(replay: Replay, files: tuple[str, ...], out: str, console: Console) -> list[Alert]:
    """Read, then replay writing each alert as it is raised."""
    sink: IO[bytes] = click.get_binary_stream("stdout") if out == "-" else open(out, "wb")  # noqa: SIM115
    try:
        with _progress(console) as progress:
            _read(replay, files, progress, console)
            task = progress.add_task("replaying", total=len(replay.rows))

            def write(alert: Alert) -> None:
                sink.write(orjson.dumps(alert.to_dict()) + b"\n")

            return replay.run(write, lambda done: progress.update(task, completed=done))
    finally:
        if out == "-":
            sink.flush()
        else:
            sink.close()

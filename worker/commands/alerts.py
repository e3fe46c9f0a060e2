"""``keywatch alerts``: list, show, follow and answer alerts (benign or compromised)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
from collections.abc import Mapping
from typing import Any

import click
import orjson

from core.errors import InputError
from core.redaction import redact_obj
from worker.alerting.render import headline, signal_lines
from worker.keystore.alerts import AlertStore, AlertView, Resolution
from worker.keystore.resolution import Resolver
from worker.keystore.service import command_service
from worker.keystore.store import KeyStore
from worker.messages import alert_from_dict
from worker.settings import Settings


def _emit(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode())


def _alert_store(settings: Settings) -> tuple[KeyStore, AlertStore]:
    store = KeyStore(settings.database_url)
    return store, AlertStore(store)


def _line(view: AlertView) -> str:
    a = view.alert
    types = ",".join(sorted({str(s.get("type")) for s in a.signals})) or "-"
    return (
        f"{a.id:<27} {a.detected_at:%Y-%m-%d %H:%M} {a.key_id or '-':<18} {a.severity:<9} "
        f"{a.action:<9} {view.incident.status:<12} {types}"
    )


@click.group("alerts")
def command() -> None:
    """Alerts kept in the key store's database, and the verdicts people give them."""


@command.command("list")
@click.option("--key", "key_id", help="Only this key's alerts.")
@click.option("--open", "open_only", is_flag=True, help="Only alerts whose incident is open.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
def list_alerts(key_id: str | None, open_only: bool, limit: int, as_json: bool) -> None:
    """List alerts, newest first, with their incident's status."""
    store, alerts = _alert_store(Settings.from_env())
    try:
        views = alerts.list_alerts(key_id, open_only, limit)
    finally:
        store.close()
    if as_json:
        for v in views:
            _emit(v.to_dict())
        return
    click.echo(f"{'ALERT ID':<27} {'DETECTED':<16} {'KEY':<18} {'SEVERITY':<9} {'ACTION':<9} "
               f"{'STATUS':<12} SIGNALS")  # fmt: skip
    for v in views:
        click.echo(_line(v))


@command.command("show")
@click.argument("alert_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(alert_id: str, as_json: bool) -> None:
    """Show one alert, its signals and its incident."""
    store, alerts = _alert_store(Settings.from_env())
    try:
        view = alerts.get(alert_id)
    finally:
        store.close()
    if as_json:
        _emit(view.to_dict())
        return
    d, i = view.to_dict(), view.incident
    alert = alert_from_dict(d)
    click.echo(headline(alert))
    click.echo(f"  {d['summary']}")
    rows = [("alert", d["id"]), ("event time", d["ts"]), ("detected", d["detected_at"]),
            ("incident", f"{i.id} ({i.alert_count} alert(s))"), ("status", i.status),
            ("resolved by", i.resolved_by or "-"), ("resolved at", d["resolved_at"] or "-"),
            ("note", i.note or "-")]  # fmt: skip
    for name, value in rows:
        click.echo(f"{name:>12}: {value}")
    for k, values in sorted((i.evidence or {}).items()):
        click.echo(f"{k:>12}: {', '.join(values) or '-'}")
    for line in signal_lines(alert):
        click.echo(f"  • {line}")


@command.command("resolve")
@click.argument("alert_id")
@click.option("--benign", "verdict", flag_value="benign", help="It was us: close and learn.")
@click.option("--compromised", "verdict", flag_value="compromised", help="Stolen: revoke.")
@click.option("--note", help="Why (kept in the audit trail).")
@click.option("--by", "actor", help="Who answers (default: cli:<login name>).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def resolve(
    alert_id: str, verdict: str | None, note: str | None, actor: str | None, as_json: bool
) -> None:
    """Answer an alert: --benign lifts its throttle and teaches the key's profile;
    --compromised revokes the key. Either way the verdict is audited."""
    if verdict is None:
        raise InputError("say --benign or --compromised")
    settings = Settings.from_env()
    who = actor or f"cli:{_login()}"
    res = asyncio.run(_resolve(settings, alert_id, verdict, who, note))
    if as_json:
        _emit({"alert_id": res.alert_id, "incident_id": res.incident_id, "key_id": res.key_id,
               "status": res.verdict, "previous": res.previous, "changed": res.changed,
               "resolved_by": who})  # fmt: skip
        return
    if not res.changed:
        click.echo(f"incident {res.incident_id} was already {res.verdict}; nothing changed")
    elif verdict == "benign":
        lifted = "; throttle lifted" if res.throttled_by_incident else ""
        click.echo(f"incident {res.incident_id} resolved as benign{lifted}; "
                   f"key {res.key_id}'s profile learns it")  # fmt: skip
    else:
        click.echo(f"incident {res.incident_id} resolved as compromised; key {res.key_id} revoked")


async def _resolve(
    settings: Settings, alert_id: str, verdict: str, actor: str, note: str | None
) -> Resolution:
    async with command_service(settings) as keys:
        resolver = Resolver(AlertStore(keys.store), keys)
        return await resolver.resolve(alert_id, verdict, actor, note)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (containers): still say where it came from
        return "unknown"


@command.command("tail")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest alert kept.")
@click.option("--json", "as_json", is_flag=True, help="Print each alert as a JSON line.")
def tail(from_beginning: bool, as_json: bool) -> None:
    """Follow keywatch.alerts and print alerts as they come (Ctrl-C stops)."""
    settings = Settings.from_env()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_tail(settings, from_beginning, as_json))


def describe(alert: Mapping[str, Any]) -> str:
    """An alert as a few human-readable lines (redacted)."""
    safe = redact_obj(dict(alert))
    try:
        typed = alert_from_dict(safe)
    except InputError as exc:
        return f"(not an alert: {exc})"
    lines = [f"{safe.get('ts')}  {headline(typed)}", f"  {typed.summary}"]
    lines += [f"  • {line}" for line in signal_lines(typed)]
    lines.append(f"  alert {typed.id}")
    return "\n".join(lines)


async def _tail(settings: Settings, from_beginning: bool, as_json: bool) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        settings.topics.alerts, bootstrap_servers=settings.broker_urls,
        auto_offset_reset="earliest" if from_beginning else "latest", enable_auto_commit=False,
    )  # fmt: skip
    try:
        await asyncio.wait_for(consumer.start(), 10)
    except (KafkaError, TimeoutError, OSError) as exc:
        await consumer.stop()
        raise InputError(f"broker unavailable at {settings.broker}: {exc!r}") from exc
    try:
        async for record in consumer:
            try:
                alert = orjson.loads(record.value or b"")
            except orjson.JSONDecodeError:
                continue
            if not isinstance(alert, dict):
                continue
            click.echo(orjson.dumps(redact_obj(alert)).decode() if as_json else describe(alert))
    finally:
        await consumer.stop()

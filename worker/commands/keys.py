"""``keywatch keys``: issue, list, show, revoke, rotate, throttle, unthrottle and limit keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import click
import orjson

from core.errors import InvalidTransition, KeyStoreError
from worker.commands.links import link_command
from worker.keystore.service import KeyService, command_service
from worker.keystore.store import KeyRecord, KeyStore, utcnow
from worker.settings import Settings

T = TypeVar("T")


def _settings() -> Settings:
    return Settings.from_env()


def _get(key_id: str) -> KeyRecord:
    """One key's record, read from the configured key store."""
    store = KeyStore(_settings().database_url)
    try:
        return store.get(key_id)
    finally:
        store.close()


def _emit(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS).decode())


def _broker_answers(bootstrap: list[str], timeout_s: float = 1.0) -> bool:
    """Whether the broker answers a metadata request within ``timeout_s`` (a TCP connect alone
    is not enough: proxies and load balancers accept connections for a broker that is down)."""
    from worker.brokerwait import reachable

    return asyncio.run(reachable(bootstrap, timeout_s))


def _with_service(fn: Callable[[KeyService], Awaitable[T]]) -> T:
    """Run ``fn`` with a KeyService wired to the configured Redis and broker, then close them.

    Without a listening broker the announcement is not attempted (no multi-second wait): the
    change stays in the outbox and a running worker announces it; one line says so.
    """
    settings = _settings()
    listening = _broker_answers(settings.broker_urls)

    async def run() -> T:
        async with command_service(settings, announce=listening) as service:
            store = service.store

            def unannounced() -> int:
                return sum(not entry.kafka_done for entry in store.pending_outbox())

            before = await asyncio.to_thread(unannounced)
            result = await fn(service)
            if await asyncio.to_thread(unannounced) > before:  # this command's change waits
                click.echo(
                    f"keywatch: note: no broker at {settings.broker}; the key-actions "
                    "announcement is queued and a running worker sends it",
                    err=True,
                )
            return result

    return asyncio.run(run())


def _describe(rec: KeyRecord) -> str:
    rows = [
        ("key id", rec.key_id), ("account", rec.account_id), ("environment", rec.environment),
        ("kind", rec.kind), ("prefix", rec.prefix), ("status", rec.status_at(utcnow())),
        ("created", rec.created_at.isoformat()),
        ("expires", rec.expires_at.isoformat() if rec.expires_at else "-"),
        ("last used", rec.last_used_at.isoformat() if rec.last_used_at else "-"),
        ("throttled until", rec.throttled_until.isoformat() if rec.throttled_until else "-"),
        ("revoked reason", rec.revoked_reason or "-"), ("rotated from", rec.rotated_from or "-"),
        ("rate limits", ", ".join(rec.rate_limits) or "-"),
    ]  # fmt: skip
    return "\n".join(f"{name:>16}: {value}" for name, value in rows)


def _record_json(rec: KeyRecord) -> dict[str, Any]:
    out = rec.to_dict()
    out["status"] = rec.status_at(utcnow())
    return out


@click.group("keys")
def command() -> None:
    """Issue and manage API keys in the key store (KEYWATCH_DATABASE_URL)."""


@command.command("create")
@click.option("--account", "account", required=True, help="Account (owner) id.")
@click.option(
    "--env", "env", type=click.Choice(["live", "test"]), default="live", show_default=True
)
@click.option(
    "--kind", type=click.Choice(["secret", "publishable", "restricted"]), default="secret",
    show_default=True, help="sk_ (secret), pk_ (publishable) or rk_ (restricted) key.",
)  # fmt: skip
@click.option("--scope", "scopes", multiple=True, help="A scope; repeat for several.")
@click.option("--expires-days", type=float, help="Expire the key after this many days.")
@click.option("--contact", help="Owner contact (e-mail or Slack handle) for alerts.")
@click.option("--rate-limit", "rate_limits", multiple=True, metavar="N/UNIT",
              help="Gateway rate limit, N/second|minute|hour|day; repeatable.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create(
    account: str, env: str, kind: str, scopes: tuple[str, ...], expires_days: float | None,
    contact: str | None, rate_limits: tuple[str, ...], as_json: bool,
) -> None:  # fmt: skip
    """Issue a key. The full key is printed once and never stored."""
    if expires_days is not None and not expires_days > 0:
        raise KeyStoreError(f"--expires-days must be positive (got {expires_days:g})")
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    store = KeyStore(_settings().database_url)
    try:
        new, rec = store.create(
            account, env, kind=kind, scopes=scopes, expires_at=expires, contact=contact,
            rate_limits=rate_limits,
        )  # fmt: skip
    finally:
        store.close()
    if as_json:
        _emit({
            "key": new.secret, "key_id": rec.key_id, "prefix": rec.prefix,
            "environment": rec.environment, "account_id": rec.account_id, "status": rec.status,
        })  # fmt: skip
        return
    click.echo(f"key: {new.secret}")
    click.echo("  (shown once: keywatch stores only its SHA-256 hash)")
    click.echo(_describe(rec))


@command.command("limits")
@click.argument("key_id")
@click.option("--rate-limit", "rate_limits", multiple=True, metavar="N/UNIT",
              help="New limit (N/second|minute|hour|day); repeatable; replaces all.")  # fmt: skip
@click.option("--clear", is_flag=True, help="Remove every rate limit of the key.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def limits(key_id: str, rate_limits: tuple[str, ...], clear: bool, as_json: bool) -> None:
    """Show or replace a key's rate limits; gateways apply a change within a second."""
    if not rate_limits and not clear:
        rec = _get(key_id)
        if as_json:
            _emit({"key_id": rec.key_id, "rate_limits": list(rec.rate_limits)})
        else:
            click.echo(f"{rec.key_id}: {', '.join(rec.rate_limits) or 'no rate limit'}")
        return
    if clear and rate_limits:
        raise click.UsageError("give --rate-limit or --clear, not both")

    async def run(svc: KeyService) -> Any:
        change = await asyncio.to_thread(svc.store.set_limits, key_id, rate_limits, actor="cli")
        await svc.drain_quietly()
        return change

    change = _with_service(run)
    _report(change.record, change.changed, "limited to " + (
        ", ".join(change.record.rate_limits) or "no rate limit"), as_json)  # fmt: skip


@command.command("list")
@click.option("--account", help="Only this account's keys.")
@click.option("--status", type=click.Choice(["active", "deprecated", "revoked", "expired"]))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def list_keys(account: str | None, status: str | None, as_json: bool) -> None:
    """List keys, newest first."""
    store = KeyStore(_settings().database_url)
    try:
        records = store.list_keys(account_id=account)
    finally:
        store.close()
    now = utcnow()
    records = [r for r in records if status is None or r.status_at(now) == status]
    if as_json:
        _emit([_record_json(r) for r in records])
        return
    click.echo(f"{'KEY ID':<18} {'ACCOUNT':<16} {'ENV':<5} {'PREFIX':<9} {'STATUS':<11} CREATED")
    for r in records:
        click.echo(
            f"{r.key_id:<18} {r.account_id[:16]:<16} {r.environment:<5} {r.prefix:<9} "
            f"{r.status_at(now):<11} {r.created_at:%Y-%m-%d %H:%M}"
        )


@command.command("show")
@click.argument("key_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(key_id: str, as_json: bool) -> None:
    """Show one key's metadata and status."""
    rec = _get(key_id)
    if as_json:
        _emit(_record_json(rec))
    else:
        click.echo(_describe(rec))


@command.command("revoke")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why (stored in the audit trail).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def revoke(key_id: str, reason: str, as_json: bool) -> None:
    """Revoke a key now (idempotent); Redis and keywatch.key-actions follow."""
    change = _with_service(lambda svc: svc.revoke(key_id, reason, actor="cli"))
    _report(change.record, change.changed, "revoked", as_json)


@command.command("rotate")
@click.argument("key_id")
@click.option("--grace-days", type=float, default=7.0, show_default=True,
              help="Days the old key keeps working (deprecated) before it expires.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rotate(key_id: str, grace_days: float, as_json: bool) -> None:
    """Issue a successor key and deprecate the old one for a grace period."""

    async def run(svc: KeyService) -> Any:
        result = await asyncio.to_thread(svc.store.rotate, key_id, grace_days, actor="cli")
        await svc.drain_quietly()
        return result

    new, rec, old = _with_service(run)
    if as_json:
        _emit({
            "key": new.secret, "key_id": rec.key_id, "prefix": rec.prefix,
            "environment": rec.environment, "account_id": rec.account_id, "status": rec.status,
            "rotated_from": old.key_id, "old_status": old.status,
            "old_expires_at": old.to_dict()["expires_at"],
        })  # fmt: skip
        return
    click.echo(f"key: {new.secret}")
    click.echo("  (shown once: keywatch stores only its SHA-256 hash)")
    click.echo(_describe(rec))
    click.echo(f"old key {old.key_id} is deprecated until {old.expires_at:%Y-%m-%d %H:%M} UTC")


@command.command("throttle")
@click.argument("key_id")
@click.option("--ttl", "ttl_s", type=float, default=3600, show_default=True, help="Seconds.")
@click.option("--reason", default="manual", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def throttle(key_id: str, ttl_s: float, reason: str, as_json: bool) -> None:
    """Throttle a key for a while (a per-key override in Redis with a TTL)."""
    change = _with_service(lambda svc: svc.throttle(key_id, ttl_s, reason, actor="cli"))
    status = change.record.status_at(utcnow())
    if not change.changed and status in ("revoked", "expired"):
        raise InvalidTransition(f"cannot throttle key {key_id}: it is {status}")
    _report(change.record, change.changed, "throttled", as_json)


@command.command("unthrottle")
@click.argument("key_id")
@click.option("--reason", default="manual", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def unthrottle(key_id: str, reason: str, as_json: bool) -> None:
    """Lift a key's throttle."""
    change = _with_service(lambda svc: svc.unthrottle(key_id, reason, actor="cli"))
    _report(change.record, change.changed, "unthrottled", as_json)


def _report(rec: KeyRecord, changed: bool, verb: str, as_json: bool) -> None:
    if as_json:
        out = _record_json(rec)
        out["changed"] = changed
        _emit(out)
    elif changed:
        click.echo(f"{rec.key_id}: {verb}")
    else:
        click.echo(f"{rec.key_id}: already {verb}; nothing changed")


command.add_command(link_command)  # worker/commands/links.py

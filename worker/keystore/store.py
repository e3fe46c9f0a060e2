"""The SQL key store: the source of truth for every key's status.

Every change writes, in one transaction, the key row, an audit row and an outbox entry (for the
Redis view and the ``keywatch.key-actions`` announcement). Operations are idempotent: revoking a
revoked key, or acting twice on the same alert, changes nothing and writes no second audit row.
Database errors are converted here: ``KeyStoreUnavailable`` is retryable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InvalidTransition, KeyNotFound, KeyStoreError, KeyStoreUnavailable
from core.keyformat import NewKey, generate_key, new_key_id
from worker.keystore.models import ApiKey, AuditEvent, OutboxEntry
from worker.keystore.ratelimits import normalise
from worker.keystore.schema import ensure_schema

STATUSES = ("active", "deprecated", "revoked", "expired")
ENVIRONMENTS = ("live", "test")
KINDS = ("secret", "publishable", "restricted")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key's metadata as the rest of keywatch sees it (never the secret)."""

    key_id: str
    key_hash: str
    prefix: str
    account_id: str
    environment: str
    kind: str
    scopes: tuple[str, ...]
    status: str
    contact: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None
    revoked_alert_id: str | None
    rotated_from: str | None
    throttled_until: datetime | None
    throttle_reason: str | None
    rate_limits: tuple[str, ...] = ()

    @classmethod
    def of(cls, row: ApiKey) -> KeyRecord:
        """Snapshot an ORM row."""
        return cls(
            key_id=row.key_id, key_hash=row.key_hash, prefix=row.prefix,
            account_id=row.account_id, environment=row.environment, kind=row.kind,
            scopes=tuple(row.scopes or ()), status=row.status, contact=row.contact,
            created_at=row.created_at, expires_at=row.expires_at, last_used_at=row.last_used_at,
            revoked_at=row.revoked_at, revoked_reason=row.revoked_reason,
            revoked_alert_id=row.revoked_alert_id, rotated_from=row.rotated_from,
            throttled_until=row.throttled_until, throttle_reason=row.throttle_reason,
            rate_limits=tuple(row.rate_limits or ()),
        )  # fmt: skip

    def status_at(self, now: datetime) -> str:
        """The effective status: a deprecated key past its grace period is expired."""
        if self.status in ("active", "deprecated") and self.expires_at and self.expires_at <= now:
            return "expired"
        return self.status

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``keys show/list --json`` (the hash is included, never the key)."""
        out = asdict(self)
        out["scopes"] = list(self.scopes)
        out["rate_limits"] = list(self.rate_limits)
        for name, value in out.items():
            if isinstance(value, datetime):
                out[name] = _iso(value)
        return out

    def gateway_view(self) -> dict[str, Any]:
        """What the gateway caches under ``apikey:{hash}`` (seed design's ApiKeyMetadata)."""
        return {
            "key_id": self.key_id, "account_id": self.account_id,
            "environment": self.environment, "scopes": list(self.scopes),
            "status": self.status, "expires_at": _iso(self.expires_at),
            "rate_limits": list(self.rate_limits),
            "throttled_until": _iso(self.throttled_until),
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Change:
    """The result of a state-changing operation."""

    record: KeyRecord
    changed: bool  # False: it was already so (idempotent repeat)


class KeyStore:
    """Key-store operations over a SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, create: bool = True, echo: bool = False) -> None:
        kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            self.engine = sa.create_engine(url, **kwargs)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise KeyStoreError(f"bad database URL: {exc}") from exc
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create:
            with self._converted():
                ensure_schema(self.engine)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    # -- reads ------------------------------------------------------------------------------

    def get(self, key_id: str) -> KeyRecord:
        """The key with ``key_id``; raises KeyNotFound."""
        with self._session() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                raise KeyNotFound(f"no key with id {key_id!r}")
            return KeyRecord.of(row)

    def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        """The key whose SHA-256 is ``key_hash``, or None."""
        with self._session() as s:
            row = s.scalars(sa.select(ApiKey).where(ApiKey.key_hash == key_hash)).first()
            return KeyRecord.of(row) if row else None

    def find_many_by_hash(self, hashes: Sequence[str]) -> dict[str, KeyRecord]:
        """Bulk lookup by hash (for batches of events)."""
        if not hashes:
            return {}
        with self._session() as s:
            rows = s.scalars(sa.select(ApiKey).where(ApiKey.key_hash.in_(list(set(hashes)))))
            return {r.key_hash: KeyRecord.of(r) for r in rows}

    def find_many(self, key_ids: Sequence[str]) -> dict[str, KeyRecord]:
        """Bulk lookup by key id."""
        if not key_ids:
            return {}
        with self._session() as s:
            rows = s.scalars(sa.select(ApiKey).where(ApiKey.key_id.in_(list(set(key_ids)))))
            return {r.key_id: KeyRecord.of(r) for r in rows}

    def list_keys(
        self, account_id: str | None = None, status: str | None = None
    ) -> list[KeyRecord]:
        """Keys, newest first, optionally for one account or status."""
        q = sa.select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.key_id)
        if account_id:
            q = q.where(ApiKey.account_id == account_id)
        if status:
            q = q.where(ApiKey.status == status)
        with self._session() as s:
            return [KeyRecord.of(r) for r in s.scalars(q)]

    def audit(self, key_id: str | None = None) -> list[AuditEvent]:
        """Audit rows in order, optionally for one key."""
        q = sa.select(AuditEvent).order_by(AuditEvent.id)
        if key_id:
            q = q.where(AuditEvent.key_id == key_id)
        with self._session() as s:
            return list(s.scalars(q))

    # -- changes ----------------------------------------------------------------------------

    def create(
        self,
        account_id: str,
        environment: str = "live",
        *,
        kind: str = "secret",
        scopes: Sequence[str] = (),
        expires_at: datetime | None = None,
        contact: str | None = None,
        actor: str = "cli",
        rotated_from: str | None = None,
        rate_limits: Sequence[str] = (),
    ) -> tuple[NewKey, KeyRecord]:
        """Issue a key: returns the secret (show it once) and the stored record."""
        _check_choice("environment", environment, ENVIRONMENTS)
        limits = normalise(rate_limits)
        _check_choice("kind", kind, KINDS)
        if not account_id or len(account_id) > 128:
            raise KeyStoreError("account id must be 1-128 characters")
        new = generate_key(environment, kind)
        now = utcnow()
        for _attempt in range(5):  # key ids are random: retry the (astronomically rare) clash
            row = ApiKey(
                key_id=new_key_id(), key_hash=new.key_hash, prefix=new.prefix,
                account_id=account_id, environment=environment, kind=kind,
                scopes=list(scopes), status="active", contact=contact, created_at=now,
                expires_at=expires_at, rotated_from=rotated_from, rate_limits=limits,
            )  # fmt: skip
            try:
                with self._session() as s, s.begin():
                    s.add(row)
                    s.flush()
                    self._audit(s, row, "issue", None, actor, None, now, {"env": environment})
                    return new, KeyRecord.of(row)
            except sa.exc.IntegrityError:
                continue
        raise KeyStoreError("could not allocate a unique key id")

    def revoke(
        self, key_id: str, reason: str, *, actor: str = "cli", alert_id: str | None = None
    ) -> Change:
        """Revoke at once; a repeat (same key, any alert) changes nothing."""
        try:
            return self._revoke(key_id, reason, actor, alert_id)
        except sa.exc.IntegrityError:  # a concurrent revoke won the unique audit row
            return Change(self.get(key_id), changed=False)

    def _revoke(self, key_id: str, reason: str, actor: str, alert_id: str | None) -> Change:
        now = utcnow()
        with self._session() as s, s.begin():
            row = self._locked(s, key_id)
            if row.status == "revoked":
                return Change(KeyRecord.of(row), changed=False)
            row.status, row.revoked_at, row.revoked_reason = "revoked", now, reason
            row.revoked_alert_id = alert_id
            row.throttled_until = None
            self._audit(s, row, "revoke", reason, actor, alert_id, now, {}, dedupe="revoke")
            self._outbox(s, row, "revoke", reason, now, alert_id=alert_id)
            return Change(KeyRecord.of(row), changed=True)

    def rotate(
        self, key_id: str, grace_days: float = 7.0, *, actor: str = "cli"
    ) -> tuple[NewKey, KeyRecord, KeyRecord]:
        """Issue a successor and deprecate the old key until the grace period ends.

        One transaction with the old row locked: rotating twice (or concurrently) cannot give a
        key two active successors; a deprecated key names the successor it already has.
        """
        if grace_days < 0:
            raise KeyStoreError("grace period must be >= 0 days")
        now = utcnow()
        until = now + timedelta(days=grace_days)
        with self._session() as s, s.begin():
            row = self._locked(s, key_id)
            status = KeyRecord.of(row).status_at(now)
            if status == "deprecated":
                successor = s.scalars(
                    sa.select(ApiKey.key_id).where(ApiKey.rotated_from == key_id)
                ).first()
                raise InvalidTransition(
                    f"key {key_id} was already rotated; its successor is "
                    f"{successor or 'unknown'} (rotate that key instead)"
                )
            if status != "active":
                raise InvalidTransition(f"cannot rotate a key that is {status}")
            new = generate_key(row.environment, row.kind)
            succ = ApiKey(
                key_id=new_key_id(), key_hash=new.key_hash, prefix=new.prefix,
                account_id=row.account_id, environment=row.environment, kind=row.kind,
                scopes=list(row.scopes or ()), status="active", contact=row.contact,
                created_at=now, rotated_from=row.key_id,
                rate_limits=list(row.rate_limits) if row.rate_limits else None,
            )  # fmt: skip
            s.add(succ)
            s.flush()
            self._audit(s, succ, "issue", None, actor, None, now, {"rotated_from": key_id})
            row.status, row.expires_at = "deprecated", until
            detail = {"new_key_id": succ.key_id, "grace_days": grace_days}
            self._audit(s, row, "rotate", "rotated", actor, None, now, detail)
            self._outbox(s, row, "rotate", "rotated", now, expires_at=_iso(until))
            return new, KeyRecord.of(succ), KeyRecord.of(row)

    def throttle(
        self,
        key_id: str,
        ttl_s: float,
        reason: str,
        *,
        actor: str = "keywatch",
        alert_id: str | None = None,
    ) -> Change:
        """Throttle for ``ttl_s`` seconds; the same alert twice throttles once."""
        if ttl_s <= 0:
            raise KeyStoreError("throttle TTL must be positive")
        try:
            return self._throttle(key_id, ttl_s, reason, actor, alert_id)
        except sa.exc.IntegrityError:  # a concurrent delivery of the same alert won
            return Change(self.get(key_id), changed=False)

    def _throttle(
        self, key_id: str, ttl_s: float, reason: str, actor: str, alert_id: str | None
    ) -> Change:
        now = utcnow()
        until = now + timedelta(seconds=ttl_s)
        with self._session() as s, s.begin():
            row = self._locked(s, key_id)
            if row.status in ("revoked", "expired"):
                return Change(KeyRecord.of(row), changed=False)
            if alert_id and self._has_dedupe(s, f"throttle:{key_id}:{alert_id}"):
                return Change(KeyRecord.of(row), changed=False)
            row.throttled_until, row.throttle_reason = until, reason
            detail = {"ttl_s": ttl_s, "until": _iso(until)}
            self._audit(s, row, "throttle", reason, actor, alert_id, now, detail, "throttle")
            self._outbox(s, row, "throttle", reason, now, ttl_s=ttl_s, alert_id=alert_id)
            return Change(KeyRecord.of(row), changed=True)

    def unthrottle(self, key_id: str, reason: str, *, actor: str = "keywatch") -> Change:
        """Lift a throttle; nothing happens when the key is not throttled."""
        now = utcnow()
        with self._session() as s, s.begin():
            row = self._locked(s, key_id)
            if row.throttled_until is None:
                return Change(KeyRecord.of(row), changed=False)
            row.throttled_until, row.throttle_reason = None, None
            self._audit(s, row, "unthrottle", reason, actor, None, now, {})
            self._outbox(s, row, "unthrottle", reason, now)
            return Change(KeyRecord.of(row), changed=True)

    def set_limits(self, key_id: str, rate_limits: Sequence[str], *, actor: str = "cli") -> Change:
        """Replace a key's rate limits (empty: none); gateways drop their cached copy."""
        limits = normalise(rate_limits)
        now = utcnow()
        with self._session() as s, s.begin():
            row = self._locked(s, key_id)
            if list(row.rate_limits or ()) == limits:
                return Change(KeyRecord.of(row), changed=False)
            row.rate_limits = limits
            reason = "rate limits: " + (", ".join(limits) or "none")
            self._audit(s, row, "limits", reason, actor, None, now, {"rate_limits": limits})
            self._outbox(s, row, "limits", reason, now)
            return Change(KeyRecord.of(row), changed=True)

    def expire_due(self, now: datetime | None = None) -> list[Change]:
        """Lift throttles whose TTL ended and expire deprecated keys past their grace period."""
        now = now or utcnow()
        with self._session() as s:
            throttled = s.scalars(
                sa.select(ApiKey.key_id).where(ApiKey.throttled_until <= now)
            ).all()
            expiring = s.scalars(
                sa.select(ApiKey.key_id).where(
                    ApiKey.status.in_(("active", "deprecated")), ApiKey.expires_at <= now
                )
            ).all()
        changes = [self.unthrottle(k, "ttl_expired") for k in throttled]
        changes += [self._expire(k, now) for k in expiring]
        return [c for c in changes if c.changed]

    def touch(self, last_used: dict[str, datetime]) -> None:
        """Record last-used times (bulk; called rarely, as the seed design advises)."""
        with self._session() as s, s.begin():
            for key_id, at in last_used.items():
                s.execute(
                    sa.update(ApiKey)
                    .where(ApiKey.key_id == key_id)
                    .where(sa.or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at))
                    .values(last_used_at=at)
                )

    # -- outbox -----------------------------------------------------------------------------

    def pending_outbox(self, limit: int = 500) -> list[OutboxEntry]:
        """Changes not yet applied to Redis or announced, oldest first."""
        q = (
            sa.select(OutboxEntry)
            .where(sa.or_(OutboxEntry.redis_done.is_(False), OutboxEntry.kafka_done.is_(False)))
            .order_by(OutboxEntry.id)
            .limit(limit)
        )
        with self._session() as s:
            return list(s.scalars(q))

    def claim_outbox(self, entry_id: int, for_s: float) -> bool:
        """Claim an entry's announcement for ``for_s`` seconds; False when another process
        holds an unexpired claim or has announced it already (a crashed claimer's claim ends)."""
        now = utcnow()
        free = sa.or_(OutboxEntry.claimed_until.is_(None), OutboxEntry.claimed_until < now)
        q = (
            sa.update(OutboxEntry)
            .where(OutboxEntry.id == entry_id, OutboxEntry.kafka_done.is_(False), free)
            .values(claimed_until=now + timedelta(seconds=for_s))
        )
        with self._session() as s, s.begin():
            return bool(s.execute(q).rowcount)  # type: ignore[attr-defined]

    def release_outbox(self, entry_id: int) -> None:
        """Give up a claim (the announcement failed: anyone may retry at once)."""
        q = sa.update(OutboxEntry).where(OutboxEntry.id == entry_id).values(claimed_until=None)
        with self._session() as s, s.begin():
            s.execute(q)

    def mark_outbox(self, entry_id: int, *, redis: bool = False, kafka: bool = False) -> None:
        """Mark an outbox entry's Redis and/or Kafka side as done; delete it when both are."""
        with self._session() as s, s.begin():
            row = s.get(OutboxEntry, entry_id)
            if row is None:
                return
            row.redis_done = row.redis_done or redis
            row.kafka_done = row.kafka_done or kafka
            if row.redis_done and row.kafka_done:
                s.delete(row)

    # -- internals --------------------------------------------------------------------------

    def _expire(self, key_id: str, now: datetime) -> Change:
        with self._session() as s, s.begin():
            row = self._locked(s, key_id)
            if row.status not in ("active", "deprecated") or not (
                row.expires_at and row.expires_at <= now
            ):
                return Change(KeyRecord.of(row), changed=False)
            row.status = "expired"
            self._audit(s, row, "expire", "grace period ended", "keywatch", None, now, {})
            self._outbox(s, row, "expire", "grace period ended", now)
            return Change(KeyRecord.of(row), changed=True)

    @staticmethod
    def _locked(s: Session, key_id: str) -> ApiKey:
        row = s.execute(
            sa.select(ApiKey).where(ApiKey.key_id == key_id).with_for_update()
        ).scalar_one_or_none()
        if row is None:
            raise KeyNotFound(f"no key with id {key_id!r}")
        return row

    @staticmethod
    def _has_dedupe(s: Session, dedupe_key: str) -> bool:
        q = sa.select(AuditEvent.id).where(AuditEvent.dedupe_key == dedupe_key)
        return s.execute(q).first() is not None

    @staticmethod
    def _audit(
        s: Session, row: ApiKey, action: str, reason: str | None, actor: str,
        alert_id: str | None, now: datetime, detail: dict[str, Any], dedupe: str | None = None,
    ) -> None:  # fmt: skip
        key = f"{dedupe}:{row.key_id}:{alert_id or ''}" if dedupe else None
        if dedupe == "revoke":
            key = f"revoke:{row.key_id}"  # a key is revoked once, whatever the alert
        s.add(AuditEvent(
            key_id=row.key_id, action=action, reason=reason, actor=actor, alert_id=alert_id,
            at=now, detail=detail, dedupe_key=key,
        ))  # fmt: skip

    @staticmethod
    def _outbox(
        s: Session, row: ApiKey, action: str, reason: str, now: datetime, **extra: Any
    ) -> None:
        payload: dict[str, Any] = {
            "key_id": row.key_id,
            "action": action,
            "reason": reason,
            "ts": _iso(now),
        }
        payload.update({k: v for k, v in extra.items() if v is not None})
        payload["view"] = KeyRecord.of(row).gateway_view()
        s.add(OutboxEntry(
            key_id=row.key_id, key_hash=row.key_hash, action=action, payload=payload,
            created_at=now,
        ))  # fmt: skip

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._converted(), self._sessions() as s:
            yield s

    @contextmanager
    def _converted(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise KeyStoreUnavailable(f"key store unavailable: {exc.orig or exc}") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise KeyStoreUnavailable(f"key store connection lost: {exc.orig}") from exc
            raise


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise KeyStoreError(f"{name} must be one of {', '.join(choices)} (got {value!r})")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()

"""SQL schema of the key store (SQLAlchemy 2.0): keys, the audit trail, the outbox.

Schema upgrades are versioned DDL steps in ``worker.keystore.schema``; never edit a released
table in place without adding a step there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the key store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the key-store tables."""


class ApiKey(Base):
    """One issued key. Only the SHA-256 hash of the secret is stored."""

    __tablename__ = "kw_keys"

    key_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    account_id: Mapped[str] = mapped_column(sa.String(128), index=True)
    environment: Mapped[str] = mapped_column(sa.String(8))
    kind: Mapped[str] = mapped_column(sa.String(16), default="secret")
    scopes: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    status: Mapped[str] = mapped_column(sa.String(16), default="active", index=True)
    contact: Mapped[str | None] = mapped_column(sa.String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(512))
    revoked_alert_id: Mapped[str | None] = mapped_column(sa.String(64))
    rotated_from: Mapped[str | None] = mapped_column(sa.String(32))
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    throttle_reason: Mapped[str | None] = mapped_column(sa.String(512))
    # ["100/minute", ...] (worker.keystore.ratelimits); enforced by gateways, empty: no limit.
    rate_limits: Mapped[list[str] | None] = mapped_column(sa.JSON, default=list)


class AuditEvent(Base):
    """Every issue, rotation, throttle, unthrottle, revocation, expiry and verdict, append-only.

    ``dedupe_key`` makes at-least-once callers idempotent: the same alert acting twice on a key
    hits the unique index and writes nothing the second time.
    """

    __tablename__ = "kw_key_audit"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    action: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str | None] = mapped_column(sa.String(512))
    actor: Mapped[str] = mapped_column(sa.String(64))
    alert_id: Mapped[str | None] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    detail: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(160), unique=True)


class OutboxEntry(Base):
    """A key change still to be applied to the Redis view and announced on Kafka.

    Written in the same transaction as the change, so a crash or a Redis/broker outage can delay
    the gateway-facing view but never lose it.
    """

    __tablename__ = "kw_outbox"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(sa.String(32))
    key_hash: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    redis_done: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    kafka_done: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # Several processes drain the outbox (worker, scanner, CLI): the one holding an unexpired
    # claim is the only one announcing the entry, so an action is announced once.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GatewayLink(Base):
    """A gateway's own credential or consumer id mapped to the keywatch key it stands for.

    Kong with ``hide_credentials`` logs only its credential UUID (``authenticated_entity.id``)
    and the consumer; ``keywatch keys link`` records which key that is.
    """

    __tablename__ = "kw_gateway_links"

    gateway_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # kong_credential | kong_consumer
    key_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SchemaVersion(Base):
    """The DDL version applied to this database."""

    __tablename__ = "kw_schema_version"

    version: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LeakFinding(Base):
    """The one response to a leaked key hash (the scanner acts once however often it is pushed)."""

    __tablename__ = "kw_leak_findings"

    key_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    key_id: Mapped[str | None] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16))
    action: Mapped[str] = mapped_column(sa.String(16))
    rule_id: Mapped[str] = mapped_column(sa.String(64))
    repository: Mapped[str | None] = mapped_column(sa.String(256))
    commit: Mapped[str | None] = mapped_column(sa.String(64))
    path: Mapped[str | None] = mapped_column(sa.String(1024))
    line: Mapped[int | None] = mapped_column(sa.Integer)
    alert_id: Mapped[str | None] = mapped_column(sa.String(64))
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    times_seen: Mapped[int] = mapped_column(sa.Integer, default=1)


class AlertRecord(Base):
    """An alert as published on ``keywatch.alerts``, kept so people can list and answer it."""

    __tablename__ = "kw_alerts"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="anomaly")
    key_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    account_id: Mapped[str | None] = mapped_column(sa.String(128))
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)  # event time
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime())
    severity: Mapped[str] = mapped_column(sa.String(16))
    action: Mapped[str] = mapped_column(sa.String(16))
    signals: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    incident_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IncidentRecord(Base):
    """Alerts on one key close together in time, and what a person said about them.

    ``status``: ``open``, ``benign``, ``compromised`` or ``expired`` (no alert for a while and
    nobody answered). ``evidence`` gathers the IPs, networks and countries the alerts named.
    """

    __tablename__ = "kw_incidents"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # its first alert's id
    key_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    account_id: Mapped[str | None] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16), default="open", index=True)
    severity: Mapped[str] = mapped_column(sa.String(16))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_alert_at: Mapped[datetime] = mapped_column(UTCDateTime())
    alert_count: Mapped[int] = mapped_column(sa.Integer, default=1)
    evidence: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    resolved_by: Mapped[str | None] = mapped_column(sa.String(64))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(sa.String(512))


class PagerDutyOpen(Base):
    """A PagerDuty incident keywatch opened and has not resolved (survives restarts)."""

    __tablename__ = "kw_pagerduty_open"

    key_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(sa.String(255))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FeedbackOutboxEntry(Base):
    """A resolution still to be published on ``keywatch.feedback`` (committed with it)."""

    __tablename__ = "kw_feedback_outbox"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(sa.String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""Schema creation and versioned upgrades.

Version 1 is the schema of ``worker.keystore.models``. An upgrade appends a function to
``UPGRADES`` (version N -> N+1, plain DDL through ``conn.execute``); ``ensure_schema`` applies the
missing steps in order inside one transaction per step, so every process can call it at start.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from worker.keystore.models import (
    AlertRecord,
    Base,
    FeedbackOutboxEntry,
    GatewayLink,
    IncidentRecord,
    PagerDutyOpen,
    SchemaVersion,
)

CURRENT_VERSION = 4


def _alerts_and_incidents(conn: sa.Connection) -> None:
    """Add the alerts, incidents, PagerDuty and feedback-outbox tables (skipping existing ones)."""
    for model in (AlertRecord, IncidentRecord, PagerDutyOpen, FeedbackOutboxEntry):
        model.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]


def _add_rate_limits(conn: sa.Connection) -> None:
    """``kw_keys.rate_limits`` (JSON list of ``N/unit``); skipped when already there."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("kw_keys")}
    if "rate_limits" not in columns:
        conn.execute(sa.text("ALTER TABLE kw_keys ADD COLUMN rate_limits JSON"))


def _add_gateway_links(conn: sa.Connection) -> None:
    """Gateway credential/consumer ids linked to keys (``keywatch keys link``), and the outbox's
    announcement claim (``kw_outbox.claimed_until``); each part skipped when already there."""
    GatewayLink.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
    columns = {c["name"] for c in sa.inspect(conn).get_columns("kw_outbox")}
    if "claimed_until" not in columns:
        kind = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
        conn.execute(sa.text(f"ALTER TABLE kw_outbox ADD COLUMN claimed_until {kind}"))


# UPGRADES[i] upgrades version i+1 to i+2.
UPGRADES: list[Callable[[sa.Connection], None]] = [
    _alerts_and_incidents,
    _add_rate_limits,
    _add_gateway_links,
]


def ensure_schema(engine: sa.Engine) -> int:
    """Create the tables on first use and apply pending upgrades; returns the version."""
    try:
        Base.metadata.create_all(engine, checkfirst=True)
    except sa.exc.OperationalError as exc:
        # another process (worker, scanner, CLI) created a table between the check and the
        # CREATE: the check is not atomic. Once more, and the check sees it.
        if "already exists" not in str(exc):
            raise
        Base.metadata.create_all(engine, checkfirst=True)
    with engine.begin() as conn:
        current = conn.execute(sa.select(sa.func.max(SchemaVersion.version))).scalar()
        if current is None:
            conn.execute(
                sa.insert(SchemaVersion).values(version=CURRENT_VERSION, applied_at=_now())
            )
            return CURRENT_VERSION
    for step in range(current, CURRENT_VERSION):
        with engine.begin() as conn:
            UPGRADES[step - 1](conn)
            conn.execute(sa.insert(SchemaVersion).values(version=step + 1, applied_at=_now()))
    return CURRENT_VERSION


def _now() -> datetime:
    return datetime.now(UTC)

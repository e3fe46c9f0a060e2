"""Leak response: a candidate's SHA-256 against the key store, then the response its key
deserves (``scanners.response.classify``), once per key hash however many pushes repeat it.

Order per key: revoke (idempotent) -> publish the finding (deterministic id, so a redelivery
repeats the same id) -> record it in ``kw_leak_findings``; a crash in between repeats the
idempotent steps, never skips one (at-least-once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from scanners.response import CandidateLike, Finding, LeakContext, build_finding, describe_where
from worker.keystore.models import LeakFinding
from worker.keystore.service import KeyService

Publish = Callable[[Finding], Awaitable[None]]


class LeakResponder:
    """Verifies candidates by hash and applies the response (revocation only when ``act``)."""

    def __init__(
        self, keys: KeyService, *, act: bool = True, remember: bool = True,
        publish: Publish | None = None, actor: str = "scanner",
    ) -> None:  # fmt: skip
        self.keys, self.act, self.publish, self.actor = keys, act, publish, actor
        self.ledger = LeakLedger(keys.store.engine) if remember else None

    async def respond(self, candidates: Sequence[CandidateLike], ctx: LeakContext) -> list[Finding]:
        """One finding per candidate; the response (revoke, publish, record) once per hash."""
        hashes = [c.key_hash for c in candidates if c.kind == "platform"]
        records = await asyncio.to_thread(self.keys.store.find_many_by_hash, hashes)
        findings: list[Finding] = []
        done: set[str] = set()
        for cand in candidates:
            finding = build_finding(cand, records.get(cand.key_hash), ctx)
            if cand.key_hash in done:
                finding.first = False
            else:
                done.add(cand.key_hash)
                await self._respond_once(finding, cand, ctx)
            findings.append(finding)
        return findings

    async def _respond_once(self, finding: Finding, cand: CandidateLike, ctx: LeakContext) -> None:
        if self.ledger is not None and await asyncio.to_thread(self.ledger.seen, cand.key_hash):
            finding.first = False
            return
        alert = finding.alert
        if self.act and finding.action == "revoke" and alert.key_id:
            location = str(alert.extra.get("location") or "content")
            reason = f"leaked in public code: {describe_where(ctx, cand, location)}"
            change = await self.keys.revoke(
                alert.key_id, reason[:500], actor=self.actor, alert_id=alert.id
            )
            finding.applied = change.changed
            alert.extra["revoked"] = True
            alert.summary += "; revoked" if change.changed else "; already revoked"
        if self.publish is not None:
            await self.publish(finding)
        if self.ledger is not None:
            finding.first = await asyncio.to_thread(self.ledger.record, finding)


class LeakLedger:
    """``kw_leak_findings``: the first response per key hash, and how often it was seen since."""

    def __init__(self, engine: sa.Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def seen(self, key_hash: str) -> bool:
        """Whether this key hash was already responded to; counts the repeat."""
        now = datetime.now(UTC)
        with self._sessions() as s, s.begin():
            n = s.execute(
                sa.update(LeakFinding)
                .where(LeakFinding.key_hash == key_hash)
                .values(times_seen=LeakFinding.times_seen + 1, last_seen=now)
            ).rowcount  # type: ignore[attr-defined]
            return bool(n)

    def record(self, finding: Finding) -> bool:
        """Record the response; False when another process recorded it first."""
        e, now = finding.alert.extra, datetime.now(UTC)
        row = LeakFinding(
            key_hash=e["key_hash"], key_id=finding.alert.key_id, status=finding.status,
            action=finding.action, rule_id=str(e["rule_id"])[:64],
            repository=_cut(e.get("repository"), 256), commit=_cut(e.get("commit"), 64),
            path=_cut(e.get("path"), 1024), line=e.get("line"), alert_id=finding.alert.id,
            first_seen=now, last_seen=now, times_seen=1,
        )  # fmt: skip
        try:
            with self._sessions() as s, s.begin():
                s.add(row)
        except sa.exc.IntegrityError:
            return False
        return True

    def get(self, key_hash: str) -> LeakFinding | None:
        """The recorded response for a key hash."""
        with self._sessions() as s:
            return s.get(LeakFinding, key_hash)


def _cut(value: Any, limit: int) -> str | None:
    return str(value)[:limit] if value is not None else None

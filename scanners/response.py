"""Verification and response: a candidate's SHA-256 against the key store, then the one response
its key deserves, once per key hash however many pushes repeat it.

| key in the store            | status            | action  | severity |
|-----------------------------|-------------------|---------|----------|
| active/deprecated, live     | active/deprecated | revoke  | critical |
| active/deprecated, test     | active/deprecated | notify  | medium   |
| revoked / expired           | revoked / expired | log     | low      |
| not in the store            | unknown           | log     | low      |
| third-party token           | unverified        | notify  | high     |

A valid checksum never makes an unknown key revocable: only the store says a key is ours.
Order per key: revoke (idempotent) -> publish the finding (deterministic id, so a redelivery
repeats the same id) -> record it in ``kw_leak_findings``; a crash in between repeats the
idempotent steps, never skips one (at-least-once).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from detectors.model import Action, Alert, Severity, Signal
from worker.keystore.models import LeakFinding
from worker.keystore.service import KeyService
from worker.keystore.store import KeyRecord

SIGNAL_TYPE = "leak.public_code"
EVIDENCE_FIELDS = ("repository", "commit", "path", "line", "rule_id", "redacted")


class CandidateLike(Protocol):
    """What the response needs from a scanner candidate (``scanners.engine.Candidate``)."""

    @property
    def rule_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def key_hash(self) -> str: ...
    @property
    def redacted(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def line(self) -> int | None: ...

    def to_dict(self) -> dict[str, object]:
        """JSON form without the secret."""
        ...


@dataclass(frozen=True, slots=True)
class LeakContext:
    """Where the candidates were found."""

    source: str  # github | gitlab | github-secret-scanning | cli
    repository: str | None = None
    commit: str | None = None
    url: str | None = None


@dataclass(slots=True)
class Finding:
    """One verified candidate: what was found, the key's status, and what was done."""

    alert: Alert
    status: str
    action: Action
    applied: bool = False  # the action was taken now (a revocation by this call)
    first: bool = True  # the first response for this key hash (published)
    candidate: dict[str, object] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        """The key is one of ours (in the store)."""
        return self.status not in ("unknown", "unverified")

    def to_dict(self) -> dict[str, Any]:
        """The contract's alert shape with the leak fields (never the secret)."""
        return self.alert.to_dict()


def classify(kind: str, record: KeyRecord | None, now: datetime) -> tuple[str, Action, Severity]:
    """(status, action, severity) for a candidate of ``kind`` whose key record is ``record``."""
    if kind != "platform":
        return "unverified", "notify", "high"
    if record is None:
        return "unknown", "log", "low"
    status = record.status_at(now)
    if status in ("active", "deprecated"):
        return (status, "revoke", "critical") if record.environment == "live" else (
            status, "notify", "medium")  # fmt: skip
    return status, "log", "low"


def alert_id_for(key_hash: str) -> str:
    """A deterministic finding id per key hash: redeliveries repeat it, consumers dedupe on it."""
    return "leak-" + hashlib.sha256(b"keywatch-leak:" + key_hash.encode()).hexdigest()[:26]


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
            finding = self._finding(cand, records.get(cand.key_hash), ctx)
            if cand.key_hash in done:
                finding.first = False
            else:
                done.add(cand.key_hash)
                await self._respond_once(finding, cand, ctx)
            findings.append(finding)
        return findings

    def _finding(self, cand: CandidateLike, record: KeyRecord | None, ctx: LeakContext) -> Finding:
        now = time.time()
        status, action, severity = classify(cand.kind, record, datetime.now(UTC))
        location = str(cand.to_dict().get("location") or "content")
        where = describe_where(ctx, cand, location, short=True)
        extra: dict[str, Any] = {
            "repository": ctx.repository, "commit": ctx.commit, "path": cand.path,
            "line": cand.line, "rule_id": cand.rule_id, "redacted": cand.redacted,
            "status": status, "key_hash": cand.key_hash, "leak_kind": cand.kind,
            "source": ctx.source, "url": ctx.url,
            "environment": record.environment if record else None, "location": location,
        }  # fmt: skip
        evidence = {k: extra[k] for k in EVIDENCE_FIELDS}
        who = f"key {record.key_id}" if record else f"{cand.kind} secret {cand.redacted}"
        alert = Alert(
            id=alert_id_for(cand.key_hash), kind="leak", key_id=record.key_id if record else None,
            account_id=record.account_id if record else None, ts=now, detected_at=now,
            severity=severity, action=action,
            signals=[Signal(SIGNAL_TYPE, severity, evidence)],
            summary=f"{who} ({status}) leaked in {where}", extra=extra,
        )  # fmt: skip
        return Finding(alert, status, action, candidate=cand.to_dict())

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


def describe_where(
    ctx: LeakContext, cand: CandidateLike, location: str = "content", short: bool = False
) -> str:
    """``repo@commit path:line`` with only the parts that are known (never ``None``)."""
    repo = ctx.repository or (None if short else ctx.url) or ctx.source
    where = repo + (f"@{ctx.commit[:12] if short else ctx.commit}" if ctx.commit else "")
    if location == "commit_message":
        return f"{where} commit message" + (f" line {cand.line}" if cand.line else "")
    place = cand.path or ""
    if cand.line:
        place = f"{place}:{cand.line}" if place else f"line {cand.line}"
    if location == "path":
        place = f"file path {place}"
    return f"{where} {place}" if place else where


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

"""What a leak finding is and which response its key deserves (pure: the key store is the
worker's, ``worker.response.leaks`` verifies and acts), once per key hash however many pushes
repeat it.

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

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from detectors.model import Action, Alert, Severity, Signal

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


class KeyRecordLike(Protocol):
    """What a finding needs from the key store's record (``worker.keystore.store.KeyRecord``)."""

    @property
    def key_id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def environment(self) -> str: ...

    def status_at(self, now: datetime) -> str:
        """The key's status at ``now``."""
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


def classify(
    kind: str, record: KeyRecordLike | None, now: datetime
) -> tuple[str, Action, Severity]:
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


def build_finding(cand: CandidateLike, record: KeyRecordLike | None, ctx: LeakContext) -> Finding:
    """The finding (alert with the leak fields) for a candidate whose key record is ``record``."""
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


class Responder(Protocol):
    """Verifies candidates and responds (``worker.response.leaks.LeakResponder``)."""

    async def respond(self, candidates: Sequence[CandidateLike], ctx: LeakContext) -> list[Finding]:
        """One finding per candidate."""
        ...

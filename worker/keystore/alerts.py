"""Alerts and incidents in SQL: what people list, show and answer (``keywatch alerts``).

An alert joins its key's open incident when that incident had an alert within ``idle_s``;
otherwise it opens a new one (its id is the first alert's id). Resolving any alert resolves its
incident: one audit row per verdict (who and why) and, in the same transaction, a feedback
outbox entry that the worker publishes on ``keywatch.feedback`` for the key's profile.
Recording is an idempotent upsert by alert id (at-least-once delivery repeats alerts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.errors import InputError, InvalidTransition, KeyStoreError
from core.redaction import redact_obj, redact_text
from detectors.model import SEVERITY_RANK
from detectors.revoked_in_use import network_of
from worker.keystore.models import (
    AlertRecord,
    ApiKey,
    AuditEvent,
    FeedbackOutboxEntry,
    IncidentRecord,
    PagerDutyOpen,
)
from worker.keystore.store import KeyStore, utcnow
from worker.messages import feedback_from_dict, to_dict

VERDICTS = ("benign", "compromised")
INCIDENT_STATUSES = ("open", "benign", "compromised", "expired")
EVIDENCE_CAP = 50  # per list: enough to show what an attacker touched, bounded for the row
MAX_NOTE = 500


class AlertNotFound(KeyStoreError):
    """No alert with that id."""


def _iso(value: datetime | None) -> str | None:
    """The alert contract's time format: ISO 8601 UTC, milliseconds, ``Z``."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(value: object, default: datetime) -> datetime:
    """An alert's ISO 8601 (``...Z``) or epoch time as an aware datetime."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, default.tzinfo)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=default.tzinfo)
    return default


def evidence_of(signals: Iterable[Any]) -> dict[str, list[str]]:
    """The IPs, networks (/24, /48 and ASNs) and countries an alert's signals name."""
    found: dict[str, set[str]] = {"ips": set(), "networks": set(), "countries": set()}

    def visit(ev: Mapping[str, Any]) -> None:
        if isinstance(ev.get("ip"), str):
            found["ips"].add(ev["ip"])
            net = network_of(ev["ip"])
            if net != ev["ip"]:  # the address's /24 or /48 (an unparsable one is no network)
                found["networks"].add(net)
        if isinstance(ev.get("country"), str):
            found["countries"].add(ev["country"])
        if isinstance(ev.get("asn"), int):
            found["networks"].add(f"AS{ev['asn']}")
        if isinstance(ev.get("place"), str) and "/" in ev["place"]:
            found["countries"].add(ev["place"].split("/", 1)[0])
        for nested in ("to",):  # impossible travel: where the key went, not where it was
            if isinstance(ev.get(nested), Mapping):
                visit(ev[nested])

    for s in signals:
        if isinstance(s, Mapping) and isinstance(s.get("evidence"), Mapping):
            visit(s["evidence"])
    return {k: sorted(v) for k, v in found.items()}


def merge_evidence(old: Mapping[str, Any], new: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Union of two evidence maps, each list capped."""
    keys = set(old) | set(new)
    return {k: sorted(set(old.get(k) or ()) | set(new.get(k) or ()))[:EVIDENCE_CAP] for k in keys}


@dataclass(frozen=True, slots=True)
class AlertView:
    """An alert with its incident's status, as the CLI prints it."""

    alert: AlertRecord
    incident: IncidentRecord

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``alerts list/show --json``)."""
        a, i = self.alert, self.incident
        return {
            "id": a.id, "kind": a.kind, "key_id": a.key_id, "account_id": a.account_id,
            "ts": _iso(a.ts), "detected_at": _iso(a.detected_at), "severity": a.severity,
            "action": a.action, "signals": a.signals, "summary": a.summary,
            "status": i.status, "incident_id": i.id, "incident_alerts": i.alert_count,
            "resolved_by": i.resolved_by, "resolved_at": _iso(i.resolved_at), "note": i.note,
            "evidence": i.evidence,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Resolution:
    """What resolving an alert did."""

    alert_id: str
    incident_id: str
    key_id: str
    verdict: str
    previous: str  # the incident's status before
    changed: bool
    throttled_by_incident: bool  # the key's current throttle came from one of its alerts
    signals: list[dict[str, Any]]  # every signal of the incident's alerts (for the profile)
    ts: float  # event time of the resolved alert (epoch seconds): what the profile learns at


class AlertStore:
    """Alert and incident operations over the key store's database."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store

    # -- recording --------------------------------------------------------------------------

    def record(self, alert: Mapping[str, Any], idle_s: float, now: datetime | None = None) -> bool:
        """Upsert one alert (idempotent by id) into its incident; True when it was new."""
        alert_id = alert.get("id")
        if not isinstance(alert_id, str) or not alert_id or len(alert_id) > 64:
            raise InputError("alert without a usable id", reason="bad_alert")
        now, alert = now or utcnow(), redact_obj(dict(alert))  # a sender may have put a key in it
        try:
            with self.store._session() as s, s.begin():
                if s.get(AlertRecord, alert_id) is not None:
                    return False
                self._insert(s, alert, alert_id, idle_s, now)
                return True
        except sa.exc.IntegrityError:  # a concurrent delivery of the same alert won
            return False

    def _insert(
        self, s: Session, alert: Mapping[str, Any], alert_id: str, idle_s: float, now: datetime
    ) -> None:
        key_id = alert.get("key_id") if isinstance(alert.get("key_id"), str) else None
        signals = [x for x in alert.get("signals") or [] if isinstance(x, Mapping)]
        severity = str(alert.get("severity", "low"))
        detected = parse_ts(alert.get("detected_at"), now)
        incident = self._open_incident(s, key_id, now - timedelta(seconds=idle_s))
        if incident is None:
            incident = IncidentRecord(
                id=alert_id, key_id=key_id, account_id=alert.get("account_id"), status="open",
                severity=severity, opened_at=detected, last_alert_at=now, alert_count=0,
                evidence={},
            )  # fmt: skip
            s.add(incident)
        incident.alert_count += 1
        incident.last_alert_at = now
        if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(incident.severity, 0):
            incident.severity = severity
        incident.evidence = merge_evidence(incident.evidence or {}, evidence_of(signals))
        s.add(AlertRecord(
            id=alert_id, kind=str(alert.get("kind", "anomaly"))[:16], key_id=key_id,
            account_id=alert.get("account_id"), ts=parse_ts(alert.get("ts"), detected),
            detected_at=detected, severity=severity[:16], action=str(alert.get("action"))[:16],
            signals=[dict(x) for x in signals], summary=str(alert.get("summary", "")),
            incident_id=incident.id, recorded_at=now,
        ))  # fmt: skip

    @staticmethod
    def _open_incident(s: Session, key_id: str | None, since: datetime) -> IncidentRecord | None:
        if key_id is None:
            return None
        q = (
            sa.select(IncidentRecord)
            .where(IncidentRecord.key_id == key_id, IncidentRecord.status == "open")
            .where(IncidentRecord.last_alert_at >= since)
            .order_by(IncidentRecord.last_alert_at.desc())
        )
        return s.scalars(q).first()

    def expire_idle(self, idle_s: float, now: datetime | None = None) -> int:
        """Mark open incidents without an alert for ``idle_s`` as ``expired``; returns how many."""
        cutoff = (now or utcnow()) - timedelta(seconds=idle_s)
        with self.store._session() as s, s.begin():
            result = s.execute(
                sa.update(IncidentRecord)
                .where(IncidentRecord.status == "open", IncidentRecord.last_alert_at < cutoff)
                .values(status="expired")
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    # -- reading ----------------------------------------------------------------------------

    def get(self, alert_id: str) -> AlertView:
        """The alert and its incident; raises ``AlertNotFound``."""
        with self.store._session() as s:
            alert = s.get(AlertRecord, alert_id)
            incident = s.get(IncidentRecord, alert.incident_id) if alert else None
            if alert is None or incident is None:
                raise AlertNotFound(f"no alert with id {alert_id!r}")
            return AlertView(alert, incident)

    def list_alerts(
        self, key_id: str | None = None, open_only: bool = False, limit: int = 200
    ) -> list[AlertView]:
        """Alerts, newest first, optionally one key's or only those of open incidents."""
        q = (
            sa.select(AlertRecord, IncidentRecord)
            .join(IncidentRecord, IncidentRecord.id == AlertRecord.incident_id)
            .order_by(AlertRecord.detected_at.desc(), AlertRecord.id.desc())
            .limit(limit)
        )
        if key_id:
            q = q.where(AlertRecord.key_id == key_id)
        if open_only:
            q = q.where(IncidentRecord.status == "open")
        with self.store._session() as s:
            return [AlertView(a, i) for a, i in s.execute(q).all()]

    # -- resolving --------------------------------------------------------------------------

    def resolve(
        self, alert_id: str, verdict: str, actor: str, note: str | None = None,
        *, publish: bool = True, now: datetime | None = None,
    ) -> Resolution:  # fmt: skip
        """Record a verdict on the alert's incident (idempotent), with its audit row.

        ``publish``: also queue the resolution for ``keywatch.feedback`` (same transaction).
        A compromised incident cannot be called benign afterwards (the key is revoked).
        """
        if verdict not in VERDICTS:
            raise InputError(f"verdict must be one of {', '.join(VERDICTS)}", reason="bad_verdict")
        now, note = now or utcnow(), redact_text(note or "")[:MAX_NOTE] or None
        with self.store._session() as s, s.begin():
            alert = s.get(AlertRecord, alert_id)
            if alert is None:
                raise AlertNotFound(f"no alert with id {alert_id!r}")
            if alert.key_id is None:
                raise InputError(f"alert {alert_id} names no key", reason="bad_alert")
            incident = s.get(IncidentRecord, alert.incident_id, with_for_update=True)
            assert incident is not None  # written with the alert
            previous = incident.status
            if previous == "compromised" and verdict == "benign":
                raise InvalidTransition(
                    f"incident {incident.id} was confirmed compromised; it cannot become benign"
                )
            changed = previous != verdict
            if changed:
                incident.status, incident.resolved_by = verdict, actor[:64]
                incident.resolved_at, incident.note = now, note
                self._audit(s, alert, incident, verdict, actor, note, now)
            signals = self._signals(s, incident.id)
            throttled = self._throttled_by(s, alert.key_id, incident.id)
            result = Resolution(alert_id, incident.id, alert.key_id, verdict, previous, changed,
                                throttled, signals, alert.ts.timestamp())  # fmt: skip
            if changed and publish:
                s.add(FeedbackOutboxEntry(key_id=alert.key_id, payload=feedback_message(
                    result, actor, note, now), created_at=now))  # fmt: skip
            return result

    @staticmethod
    def _audit(
        s: Session, alert: AlertRecord, incident: IncidentRecord, verdict: str, actor: str,
        note: str | None, now: datetime,
    ) -> None:  # fmt: skip
        detail = {"verdict": verdict, "incident_id": incident.id, "evidence": incident.evidence}
        s.add(AuditEvent(
            key_id=alert.key_id, action=verdict, reason=note or verdict,
            actor=actor[:64], alert_id=alert.id, at=now, detail=detail,
            dedupe_key=f"resolve:{incident.id}:{verdict}"[:160],
        ))  # fmt: skip

    @staticmethod
    def _signals(s: Session, incident_id: str) -> list[dict[str, Any]]:
        q = sa.select(AlertRecord.signals).where(AlertRecord.incident_id == incident_id)
        return [dict(sig) for sigs in s.scalars(q) for sig in sigs or []]

    @staticmethod
    def _throttled_by(s: Session, key_id: str, incident_id: str) -> bool:
        """Whether the key is throttled now and its latest throttle came from this incident."""
        key = s.get(ApiKey, key_id)
        if key is None or key.throttled_until is None:
            return False
        last = s.scalars(
            sa.select(AuditEvent.alert_id)
            .where(AuditEvent.key_id == key_id, AuditEvent.action == "throttle")
            .order_by(AuditEvent.id.desc())
        ).first()
        if last is None:
            return False
        q = sa.select(AlertRecord.id).where(
            AlertRecord.id == last, AlertRecord.incident_id == incident_id
        )
        return s.execute(q).first() is not None

    # -- feedback outbox --------------------------------------------------------------------

    def pending_feedback(self, limit: int = 200) -> list[FeedbackOutboxEntry]:
        """Resolutions not yet published on ``keywatch.feedback``, oldest first."""
        q = sa.select(FeedbackOutboxEntry).order_by(FeedbackOutboxEntry.id).limit(limit)
        with self.store._session() as s:
            return list(s.scalars(q))

    def queue_feedback(self, message: Mapping[str, Any]) -> None:
        """Queue a resolution for ``keywatch.feedback`` (a Slack button press): committed here
        before Slack gets its 200, published by the worker's outbox timer, so a broker outage
        delays the verdict and never loses it."""
        key_id = str(message.get("key_id") or "")[:32]
        if not key_id:
            raise InputError("a resolution names no key", reason="bad_feedback")
        payload = redact_obj(dict(message))
        with self.store._session() as s, s.begin():
            s.add(FeedbackOutboxEntry(key_id=key_id, payload=payload, created_at=utcnow()))

    def feedback_done(self, entry_id: int) -> None:
        """Forget a published outbox entry."""
        with self.store._session() as s, s.begin():
            s.execute(sa.delete(FeedbackOutboxEntry).where(FeedbackOutboxEntry.id == entry_id))

    # -- PagerDuty's open incidents ---------------------------------------------------------

    def pagerduty_open(self) -> dict[str, str]:
        """Key id -> dedup key of every PagerDuty incident keywatch left open."""
        with self.store._session() as s:
            q = sa.select(PagerDutyOpen.key_id, PagerDutyOpen.dedup_key)
            return {k: d for k, d in s.execute(q).all()}

    def pagerduty_claim(self, key_id: str, dedup_key: str) -> str:
        """The key's open dedup key, recording ``dedup_key`` when it has none."""
        try:
            with self.store._session() as s, s.begin():
                row = s.get(PagerDutyOpen, key_id)
                if row is not None:
                    return row.dedup_key
                s.add(PagerDutyOpen(key_id=key_id, dedup_key=dedup_key, opened_at=utcnow()))
                return dedup_key
        except sa.exc.IntegrityError:
            return self.pagerduty_open().get(key_id, dedup_key)

    def pagerduty_release(self, key_id: str) -> None:
        """The key's PagerDuty incident was resolved."""
        with self.store._session() as s, s.begin():
            s.execute(sa.delete(PagerDutyOpen).where(PagerDutyOpen.key_id == key_id))


def feedback_message(
    res: Resolution, actor: str, note: str | None, now: datetime
) -> dict[str, Any]:
    """The ``keywatch.feedback`` message for a resolution (keyed by key id)."""
    return to_dict(feedback_from_dict({
        "type": "resolution", "alert_id": res.alert_id, "incident_id": res.incident_id,
        "key_id": res.key_id, "verdict": res.verdict, "actor": actor, "note": note,
        "ts": _iso(now), "signals": res.signals,
    }))  # fmt: skip

"""The JSON topics' messages as typed records: alerts, key actions and feedback.

These topics are public (gateways and tools read them), so unlike worker.records they stay JSON
objects with the contract's field names (/work/shared/contracts.md). The evolution rules are
worker.records' convention for objects: a reader ignores fields it does not know, and a new field
is added with a default, so old and new writers and readers share a topic during a rolling
deploy. Today's messages are kept as fixtures (tests/fixtures/messages_v1/) that a test decodes.

Decoding turns a malformed message into ``InputError`` naming the failing field
(``Expected `str`, got `int` - at `$.key_id```), never an exception a worker dies of.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from core.errors import InputError
from detectors.model import Alert, Signal

T = TypeVar("T")
Severity = Literal["low", "medium", "high", "critical"]
AlertAction = Literal["log", "notify", "throttle", "revoke"]
KeyActionName = Literal["throttle", "revoke", "unthrottle", "rotate", "expire"]


class AlertSignal(msgspec.Struct, frozen=True):
    """One signal of an alert, as on the wire."""

    type: str
    severity: Severity
    evidence: dict[str, Any] = {}


class AlertMessage(msgspec.Struct, frozen=True):
    """An alert on ``keywatch.alerts`` / ``keywatch.leaks`` (the contract's fields)."""

    id: str
    kind: Literal["anomaly", "leak", "auth_abuse"]
    ts: datetime
    detected_at: datetime
    severity: Severity
    action: AlertAction
    key_id: str | None = None
    account_id: str | None = None
    signals: list[AlertSignal] = []
    summary: str = ""


class KeyAction(msgspec.Struct, frozen=True, omit_defaults=True):
    """A key change announced on ``keywatch.key-actions`` so gateways drop cached state."""

    key_id: str
    action: str  # KeyActionName today; a newer writer may announce an action not listed yet
    reason: str
    ts: str  # ISO 8601 UTC, as the key store writes it
    ttl_s: float | None = None
    alert_id: str | None = None
    expires_at: str | None = None


class Feedback(msgspec.Struct, frozen=True, omit_defaults=True, kw_only=True):
    """A verdict on ``keywatch.feedback`` (keyed by key id): ``keywatch alerts resolve`` or a
    Slack button press. Unset optional fields are left out of the JSON."""

    type: str  # "resolution" today; a reader skips types it does not know
    alert_id: str
    key_id: str
    verdict: Literal["benign", "compromised"]
    actor: str
    note: str | None = None
    ts: str | float | None = None  # ISO 8601 from the CLI, epoch seconds from Slack
    incident_id: str | None = None
    signals: list[dict[str, Any]] | None = None  # the incident's signals (for the profile)
    response_url: str | None = None  # Slack: where the message that asked is updated
    message: dict[str, Any] | None = None  # Slack: the message that asked


_ALERT_FIELDS = frozenset(AlertMessage.__struct_fields__)


def loads(value: Any) -> dict[str, Any] | None:
    """A message's JSON object, or None when it is not one."""
    try:
        obj = orjson.loads(value)
    except (orjson.JSONDecodeError, TypeError):
        return None
    return obj if isinstance(obj, dict) else None


def convert(obj: Any, record_type: type[T], reason: str) -> T:
    """``obj`` (a decoded JSON object) as ``record_type``; ``InputError(reason)`` naming the
    failing path when it does not fit."""
    try:
        return msgspec.convert(obj, record_type)
    except msgspec.ValidationError as exc:
        raise InputError(f"{record_type.__name__}: {exc}", reason=reason) from exc


def alert_from_dict(obj: Any) -> Alert:
    """The typed ``Alert`` for an alert message (fields beyond the contract's go to ``extra``)."""
    msg = convert(obj, AlertMessage, "bad_alert")
    return Alert(
        id=msg.id, kind=msg.kind, key_id=msg.key_id, account_id=msg.account_id,
        ts=msg.ts.timestamp(), detected_at=msg.detected_at.timestamp(),
        severity=msg.severity, action=msg.action,
        signals=[Signal(s.type, s.severity, dict(s.evidence)) for s in msg.signals],
        summary=msg.summary, extra={k: v for k, v in obj.items() if k not in _ALERT_FIELDS},
    )  # fmt: skip


def is_alert(obj: Any) -> bool:
    """Whether ``obj`` decodes as an alert."""
    try:
        convert(obj, AlertMessage, "bad_alert")
    except InputError:
        return False
    return True


def key_action_from_dict(obj: Any) -> KeyAction:
    """A ``keywatch.key-actions`` message as a ``KeyAction`` (``InputError`` when malformed)."""
    return convert(obj, KeyAction, "bad_key_action")


def feedback_from_dict(obj: Any) -> Feedback:
    """A ``keywatch.feedback`` message as ``Feedback`` (``InputError`` when malformed)."""
    return convert(obj, Feedback, "bad_feedback")


def to_dict(record: msgspec.Struct) -> dict[str, Any]:
    """A key action or feedback record as its JSON object (unset optional fields left out)."""
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out

"""Alert bodies for each sink, derived from the typed ``Alert`` (decoded once from the alert
JSON, ``worker.messages.alert_from_dict``) and always redacted.

Slack: Block Kit (header, fields, one section per signal, context) with a ``text`` fallback
(ref: api.slack.com/reference/block-kit/blocks: header text <= 150 chars, section text <= 3000,
at most 10 fields of <= 2000 chars). PagerDuty: Events API v2 (ref:
developer.pagerduty.com/docs/events-api-v2/trigger-events: summary <= 1024 chars).
"""

from __future__ import annotations

from typing import Any

from core.redaction import redact_obj, redact_text
from detectors.model import Alert, iso

LEAK_FIELDS = ("repository", "commit", "path", "line", "rule_id", "redacted", "status")
_PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
_EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:",
          "medium": ":large_yellow_circle:", "low": ":white_circle:"}  # fmt: skip


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _evidence(evidence: dict[str, Any]) -> str:
    parts = []
    for name, value in evidence.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{name}={shown}")
    return "; ".join(parts)


def signal_lines(alert: Alert) -> list[str]:
    """One line per signal: type, severity and evidence."""
    lines = []
    for s in alert.signals:
        ev = _evidence(s.evidence)
        lines.append(f"`{s.type}` ({s.severity})" + (f": {ev}" if ev else ""))
    return lines


def headline(alert: Alert) -> str:
    """A short title: severity, kind, key and action."""
    what = "leaked key" if alert.kind == "leak" else "anomaly"
    return f"{alert.severity.upper()} {what} on key {alert.key_id or '?'}: {alert.action}"


def leak_fields(alert: Alert) -> list[tuple[str, Any]]:
    """A leak finding's location and key status (the contract's leak fields that are set)."""
    if alert.kind != "leak":
        return []
    return [(f, alert.extra[f]) for f in LEAK_FIELDS if alert.extra.get(f) is not None]


def slack_escape(text: str) -> str:
    """Slack's control characters escaped, so untrusted text (a file named ``<!channel>.md``, a
    ``<https://evil|docs>`` link) is shown, never acted on.

    ref: api.slack.com/reference/surfaces/formatting#escaping: replace &, < and > (only those).
    Our own markup uses none of the three, so whole texts are escaped, values and all.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int = 3000) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(slack_escape(text), limit) or " "}


def _fields(alert: Alert, contact: str | None) -> list[dict[str, str]]:
    pairs: list[tuple[str, Any]] = [
        ("Key", alert.key_id),
        ("Account", alert.account_id),
        ("Severity", alert.severity),
        ("Action taken", alert.action),
    ]
    if contact:
        pairs.append(("Owner contact", contact))
    pairs += [(f.capitalize(), value) for f, value in leak_fields(alert)]
    return [_mrkdwn(f"*{k}*\n{v if v is not None else '—'}", 2000) for k, v in pairs[:10]]


def slack_message(alert: Alert, contact: str | None = None) -> dict[str, Any]:
    """A Block Kit message with a plain-text fallback."""
    signals = "\n".join(f"• {line}" for line in signal_lines(alert)) or "• none"
    context = f"Event time {iso(alert.ts)} · detected {iso(alert.detected_at)} · alert {alert.id}"
    emoji = _EMOJI.get(alert.severity, "")
    message = {
        "text": _cut(slack_escape(f"{emoji} {headline(alert)}: {alert.summary}"), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(headline(alert), 150)}},
            {"type": "section", "text": _mrkdwn(alert.summary)},
            {"type": "section", "fields": _fields(alert, contact)},
            {"type": "section", "text": _mrkdwn(f"*Signals*\n{signals}")},
            {"type": "context", "elements": [_mrkdwn(context)]},
            *_actions(alert),
        ],
    }
    return redact_obj(message)  # type: ignore[no-any-return]


def _actions(alert: Alert) -> list[dict[str, Any]]:
    """Benign / Compromised buttons (answered at ``POST /slack/interactions``)."""
    if not alert.id or not alert.key_id:
        return []
    value = f"{alert.id}|{alert.key_id}"[:2000]  # ref: Block Kit button value <= 2000
    confirm = {
        "title": {"type": "plain_text", "text": "Revoke this key?"},
        "text": {"type": "plain_text", "text": "Compromised revokes the key at once."},
        "confirm": {"type": "plain_text", "text": "Revoke"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }
    buttons = [
        {"type": "button", "action_id": "keywatch_benign", "value": value, "style": "primary",
         "text": {"type": "plain_text", "text": "Benign"}},
        {"type": "button", "action_id": "keywatch_compromised", "value": value,
         "style": "danger", "text": {"type": "plain_text", "text": "Compromised"},
         "confirm": confirm},
    ]  # fmt: skip
    return [{"type": "actions", "block_id": "keywatch_verdict", "elements": buttons}]


def webhook_payload(alert: Alert, contact: str | None = None) -> dict[str, Any]:
    """The generic webhook body: Standard Webhooks' ``{type, timestamp, data}`` envelope
    around the alert's contract JSON."""
    data = alert.to_dict()
    if contact:
        data["contact"] = contact
    body = {"type": f"keywatch.{alert.kind}", "timestamp": data["detected_at"], "data": data}
    return redact_obj(body)  # type: ignore[no-any-return]


def pagerduty_trigger(
    alert: Alert, routing_key: str, dedup_key: str, contact: str | None = None
) -> dict[str, Any]:
    """An Events v2 ``trigger`` for a high or critical alert."""
    details: dict[str, Any] = {
        "alert_id": alert.id,
        "key_id": alert.key_id,
        "account_id": alert.account_id,
        "action": alert.action,
        "signals": signal_lines(alert),
        "event_time": iso(alert.ts),
    }
    if contact:
        details["contact"] = contact
    details.update({f: alert.extra[f] for f in LEAK_FIELDS if alert.extra.get(f) is not None})
    payload = {
        "summary": _cut(f"{headline(alert)}: {alert.summary}", 1024),
        "severity": _PD_SEVERITY.get(alert.severity, "warning"),
        "source": "keywatch",
        "component": alert.key_id or "unknown",
        "group": alert.account_id or "unknown",
        "class": ",".join(sorted({s.type for s in alert.signals})) or "keywatch",
        "custom_details": details,
    }
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": redact_obj(payload),
    }


def pagerduty_resolve(routing_key: str, dedup_key: str) -> dict[str, Any]:
    """An Events v2 ``resolve`` for an incident opened with ``dedup_key``."""
    return {"routing_key": routing_key, "event_action": "resolve",
            "dedup_key": redact_text(dedup_key)}  # fmt: skip

"""Alert bodies for each sink, derived from the alert JSON and always redacted.

Slack: Block Kit (header, fields, one section per signal, context) with a ``text`` fallback
(ref: api.slack.com/reference/block-kit/blocks: header text <= 150 chars, section text <= 3000,
at most 10 fields of <= 2000 chars). PagerDuty: Events API v2 (ref:
developer.pagerduty.com/docs/events-api-v2/trigger-events: summary <= 1024 chars).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.redaction import redact_obj, redact_text
from detectors.model import SEVERITY_RANK

LEAK_FIELDS = ("repository", "commit", "path", "line", "rule_id", "redacted", "status")
_PD_SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
_EMOJI = {"critical": ":red_circle:", "high": ":large_orange_circle:",
          "medium": ":large_yellow_circle:", "low": ":white_circle:"}  # fmt: skip


def at_least(severity: object, minimum: str) -> bool:
    """Whether ``severity`` ranks at or above ``minimum`` (unknown severities rank lowest)."""
    return SEVERITY_RANK.get(str(severity), 0) >= SEVERITY_RANK[minimum]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _evidence(evidence: object) -> str:
    if not isinstance(evidence, Mapping) or not evidence:
        return ""
    parts = []
    for name, value in evidence.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{name}={shown}")
    return "; ".join(parts)


def signal_lines(alert: Mapping[str, Any]) -> list[str]:
    """One line per signal: type, severity and evidence."""
    lines = []
    for s in alert.get("signals") or []:
        if isinstance(s, Mapping):
            ev = _evidence(s.get("evidence"))
            lines.append(f"`{s.get('type')}` ({s.get('severity')})" + (f": {ev}" if ev else ""))
    return lines


def headline(alert: Mapping[str, Any]) -> str:
    """A short title: severity, kind, key and action."""
    sev = str(alert.get("severity", "?")).upper()
    what = "leaked key" if alert.get("kind") == "leak" else "anomaly"
    return f"{sev} {what} on key {alert.get('key_id') or '?'}: {alert.get('action', '?')}"


def slack_escape(text: str) -> str:
    """Slack's control characters escaped, so untrusted text (a file named ``<!channel>.md``, a
    ``<https://evil|docs>`` link) is shown, never acted on.

    ref: api.slack.com/reference/surfaces/formatting#escaping: replace &, < and > (only those).
    Our own markup uses none of the three, so whole texts are escaped, values and all.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str, limit: int = 3000) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _cut(slack_escape(text), limit) or " "}


def _fields(alert: Mapping[str, Any], contact: str | None) -> list[dict[str, str]]:
    pairs = [
        ("Key", alert.get("key_id")),
        ("Account", alert.get("account_id")),
        ("Severity", alert.get("severity")),
        ("Action taken", alert.get("action")),
    ]
    if contact:
        pairs.append(("Owner contact", contact))
    if alert.get("kind") == "leak":
        pairs += [(f.capitalize(), alert.get(f)) for f in LEAK_FIELDS if alert.get(f) is not None]
    return [_mrkdwn(f"*{k}*\n{v if v is not None else '—'}", 2000) for k, v in pairs[:10]]


def slack_message(alert: Mapping[str, Any], contact: str | None = None) -> dict[str, Any]:
    """A Block Kit message with a plain-text fallback."""
    signals = "\n".join(f"• {line}" for line in signal_lines(alert)) or "• none"
    context = (
        f"Event time {alert.get('ts')} · detected {alert.get('detected_at')}"
        f" · alert {alert.get('id')}"
    )
    emoji = _EMOJI.get(str(alert.get("severity")), "")
    message = {
        "text": _cut(slack_escape(f"{emoji} {headline(alert)}: {alert.get('summary', '')}"), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": _cut(headline(alert), 150)}},
            {"type": "section", "text": _mrkdwn(str(alert.get("summary", "")))},
            {"type": "section", "fields": _fields(alert, contact)},
            {"type": "section", "text": _mrkdwn(f"*Signals*\n{signals}")},
            {"type": "context", "elements": [_mrkdwn(context)]},
            *_actions(alert),
        ],
    }
    return redact_obj(message)  # type: ignore[no-any-return]


def _actions(alert: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Benign / Compromised buttons (answered at ``POST /slack/interactions``)."""
    if not alert.get("id") or not alert.get("key_id"):
        return []
    value = f"{alert['id']}|{alert['key_id']}"[:2000]  # ref: Block Kit button value <= 2000
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


def webhook_payload(alert: Mapping[str, Any], contact: str | None = None) -> dict[str, Any]:
    """The generic webhook body: Standard Webhooks' ``{type, timestamp, data}`` envelope."""
    data = dict(alert)
    if contact:
        data["contact"] = contact
    kind = alert.get("kind", "anomaly")
    body = {"type": f"keywatch.{kind}", "timestamp": alert.get("detected_at"), "data": data}
    return redact_obj(body)  # type: ignore[no-any-return]


def _types(alert: Mapping[str, Any]) -> list[str]:
    signals = alert.get("signals") or []
    return sorted({str(s.get("type")) for s in signals if isinstance(s, Mapping)})


def pagerduty_trigger(
    alert: Mapping[str, Any], routing_key: str, dedup_key: str, contact: str | None = None
) -> dict[str, Any]:
    """An Events v2 ``trigger`` for a high or critical alert."""
    details: dict[str, Any] = {
        "alert_id": alert.get("id"),
        "key_id": alert.get("key_id"),
        "account_id": alert.get("account_id"),
        "action": alert.get("action"),
        "signals": signal_lines(alert),
        "event_time": alert.get("ts"),
    }
    if contact:
        details["contact"] = contact
    details.update({f: alert.get(f) for f in LEAK_FIELDS if alert.get(f) is not None})
    payload = {
        "summary": _cut(f"{headline(alert)}: {alert.get('summary', '')}", 1024),
        "severity": _PD_SEVERITY.get(str(alert.get("severity")), "warning"),
        "source": "keywatch",
        "component": str(alert.get("key_id") or "unknown"),
        "group": str(alert.get("account_id") or "unknown"),
        "class": ",".join(_types(alert)) or "keywatch",
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

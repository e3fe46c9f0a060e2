"""Untrusted text in Slack messages is escaped: no mention, link or entity from a leak's data."""

from __future__ import annotations

import orjson

from detectors.model import Alert
from worker.alerting.render import pagerduty_trigger, slack_message, webhook_payload
from worker.messages import alert_from_dict

HOSTILE = "<!channel>.md"
LINK = "<https://evil.example|docs> & <@U024BE7LH>"


def leak_alert() -> Alert:
    return alert_from_dict({
        "id": "leak-1", "kind": "leak", "key_id": "k1", "account_id": "acme",
        "ts": "2026-11-22T03:04:05.123Z", "detected_at": "2026-11-22T03:04:05.412Z",
        "severity": "critical", "action": "revoke", "repository": "acme/<!here>",
        "path": HOSTILE, "line": 3, "rule_id": "keywatch-api-key", "redacted": "sk_live_ab12…",
        "status": "active", "summary": f"key k1 leaked in {LINK}",
        "signals": [{"type": "leak.public_code", "severity": "critical",
                     "evidence": {"path": HOSTILE, "repository": "<!everyone>"}}],
    })  # fmt: skip


def _mrkdwn_texts(msg: dict[str, object]) -> list[str]:
    texts = [str(msg["text"])]
    for block in msg["blocks"]:  # type: ignore[attr-defined]
        for part in [block.get("text"), *block.get("fields", []), *block.get("elements", [])]:
            if isinstance(part, dict) and part.get("type") == "mrkdwn":
                texts.append(part["text"])
    return texts


def test_slack_escapes_every_untrusted_value() -> None:
    texts = _mrkdwn_texts(slack_message(leak_alert()))
    joined = "\n".join(texts)
    for raw in ("<!channel>", "<!here>", "<!everyone>", "<https://", "<@U024"):
        assert raw not in joined
    assert "&lt;!channel&gt;.md" in joined
    assert "&lt;https://evil.example|docs&gt; &amp; &lt;@U024BE7LH&gt;" in joined
    assert "&amp;amp;" not in joined  # escaped once


def test_data_sinks_keep_values_as_they_are() -> None:
    # JSON sinks carry data, not markup: the receiver escapes for its own display.
    body = orjson.dumps(webhook_payload(leak_alert())).decode()
    assert HOSTILE in body
    pd = pagerduty_trigger(leak_alert(), "rk", "dk")
    assert pd["payload"]["custom_details"]["path"] == HOSTILE

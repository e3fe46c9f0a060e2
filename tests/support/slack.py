"""Slack as it calls keywatch: signed interaction requests and ``block_actions`` payloads."""

from __future__ import annotations

import time
from typing import Any

from worker.alerting.interactions import sign

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # the example secret of Slack's verification guide


def block_actions(action_id: str, value: str, message: dict[str, Any]) -> dict[str, Any]:
    """A ``block_actions`` payload as Slack sends it for a button in a webhook-posted message
    (shape of api.slack.com/reference/interaction-payloads/block-actions)."""
    return {
        "type": "block_actions",
        "user": {"id": "U01AZ88AQQ4", "username": "alice", "name": "alice",
                 "team_id": "T01B5M3VC1X"},
        "api_app_id": "A01BGTV24LQ", "token": "RFEwDETALFMJkphCasIfOUZT",
        "container": {"type": "message", "message_ts": "1600857119.015400",
                      "channel_id": "C01ACC2E8S3", "is_ephemeral": False},
        "trigger_id": "1388105719492.1379717998065.9bc163894734c1f415a2c504e81dec91",
        "team": {"id": "T01B5M3VC1X", "domain": "acme-sec"},
        "enterprise": None, "is_enterprise_install": False,
        "channel": {"id": "C01ACC2E8S3", "name": "security-alerts"},
        "message": {"bot_id": "B01AQ1SN737", "type": "message", "text": message["text"],
                    "user": "U01BGV723R6", "ts": "1600857119.015400", "team": "T01B5M3VC1X",
                    "blocks": message["blocks"]},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T01B5M3VC1X/1391234567/abcdEFGH",
        "actions": [{"action_id": action_id, "block_id": "keywatch_verdict",
                     "text": {"type": "plain_text", "text": "Benign", "emoji": True},
                     "value": value, "style": "primary", "type": "button",
                     "action_ts": "1600857125.223134"}],
    }  # fmt: skip


def signed(body: bytes, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    """Slack's signature headers for ``body`` (now, or at ``at``), with ``secret``."""
    stamp = str(int(time.time() if at is None else at))
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(secret, stamp, body)}

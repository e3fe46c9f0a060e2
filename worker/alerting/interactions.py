"""Slack interactivity: the Benign / Compromised buttons on alert messages.

Slack POSTs ``application/x-www-form-urlencoded`` with one ``payload`` field (JSON, type
``block_actions``) to the request URL, signed with the app's signing secret:
``X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:{X-Slack-Request-Timestamp}:{body}"))``.
ref: api.slack.com/authentication/verifying-requests-from-slack (refuse timestamps more than five
minutes away, compare in constant time); api.slack.com/interactivity/handling (acknowledge within
3 seconds; ``response_url`` updates the original message with ``replace_original``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from core.errors import InputError
from core.redaction import redact_obj

MAX_SKEW_S = 300  # ref: Slack: "more than five minutes from local time ... could be a replay"
ACTION_IDS = {"keywatch_benign": "benign", "keywatch_compromised": "compromised"}


class SignatureError(InputError):
    """The request is not from Slack (bad, missing or stale signature)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="bad_signature")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 signature of a request body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None) -> None:
    """Raise ``SignatureError`` unless Slack signed ``body`` within the last five minutes."""
    lower = {k.lower(): v for k, v in headers.items()}
    stamp, given = lower.get("x-slack-request-timestamp", ""), lower.get("x-slack-signature", "")
    if not stamp or not given:
        raise SignatureError("missing Slack signature headers")
    try:
        age = abs((time.time() if now is None else now) - int(stamp))
    except ValueError as exc:
        raise SignatureError("bad Slack timestamp") from exc
    if age > MAX_SKEW_S:
        raise SignatureError("stale Slack request (timestamp more than 5 minutes away)")
    if not hmac.compare_digest(sign(secret, stamp, body).encode(), given.encode()):
        raise SignatureError("bad Slack signature")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One button press: which alert, what verdict, who, and where to answer."""

    alert_id: str
    key_id: str
    verdict: str
    actor: str
    response_url: str | None
    message: dict[str, Any] | None  # the original message (its blocks are kept in the update)


def parse(body: bytes) -> Verdict:
    """The keywatch button press in a ``block_actions`` payload; ``InputError`` otherwise."""
    fields = parse_qs(body.decode("utf-8", "replace"))
    try:
        payload = orjson.loads(fields["payload"][0])
    except (KeyError, IndexError, orjson.JSONDecodeError) as exc:
        raise InputError("no JSON payload field", reason="bad_interaction") from exc
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise InputError("not a block_actions payload", reason="bad_interaction")
    action = next((a for a in payload.get("actions") or []
                   if isinstance(a, dict) and a.get("action_id") in ACTION_IDS), None)  # fmt: skip
    if action is None or not isinstance(action.get("value"), str):
        raise InputError("no keywatch action in the payload", reason="bad_interaction")
    alert_id, _, key_id = action["value"].partition("|")
    if not alert_id or not key_id:
        raise InputError("bad keywatch action value", reason="bad_interaction")
    user = payload.get("user") or {}
    who = user.get("username") or user.get("name") or user.get("id") or "unknown"
    url = payload.get("response_url")
    message = payload.get("message")
    return Verdict(
        alert_id, key_id, ACTION_IDS[action["action_id"]], f"slack:{who}"[:64],
        url if isinstance(url, str) and urlsplit(url).scheme in ("http", "https") else None,
        message if isinstance(message, dict) else None,
    )  # fmt: skip


def resolved_message(
    original: Mapping[str, Any] | None, verdict: str, actor: str, detail: str = ""
) -> dict[str, Any]:
    """The original message with its buttons replaced by the verdict and who gave it."""
    blocks = [b for b in (original or {}).get("blocks") or []
              if isinstance(b, dict) and b.get("type") != "actions"]  # fmt: skip
    icon = ":white_check_mark:" if verdict == "benign" else ":rotating_light:"
    who = actor.removeprefix("slack:")
    line = f"{icon} Resolved as *{verdict}* by {who}" + (f": {detail}" if detail else "")
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:3000]}})
    text = str((original or {}).get("text") or "keywatch alert")
    body = {"replace_original": True, "text": f"{text} ({verdict})"[:3000], "blocks": blocks}
    return redact_obj(body)  # type: ignore[no-any-return]

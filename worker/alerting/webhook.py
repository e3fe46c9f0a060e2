"""Generic alert webhook signed per Standard Webhooks (standardwebhooks.com).

Headers: ``webhook-id`` (the alert id: receivers dedupe on it), ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(secret, "id.timestamp.body"))
where the secret is the base64 part of ``whsec_…``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

import httpx
import orjson

from core.errors import ConfigError
from detectors.model import Alert
from worker.alerting.http import post
from worker.alerting.render import webhook_payload


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret; ``ConfigError`` when it is not one."""
    if not secret.startswith("whsec_"):
        raise ConfigError("webhook secret must start with whsec_")
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("webhook secret is not valid base64 after whsec_") from exc


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSink:
    """Posts the alert JSON, signed, to one URL."""

    name = "webhook"

    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        secret: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.http, self.url, self.clock = http, url, clock
        self._key = secret_bytes(secret)

    def request(self, alert: Alert, contact: str | None = None) -> tuple[bytes, dict[str, str]]:
        """The body and headers for one delivery attempt (signed with the current time)."""
        body = orjson.dumps(webhook_payload(alert, contact))
        msg_id = alert.id or hashlib.sha256(body).hexdigest()[:26]
        ts = int(self.clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self._key, msg_id, ts, body),
        }
        return body, headers

    async def send(self, alert: Alert, contact: str | None = None) -> None:
        """One attempt; raises ``DeliveryError``."""
        body, headers = self.request(alert, contact)
        await post(self.http, self.name, self.url, body, headers)

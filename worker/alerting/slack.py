"""Slack incoming webhook: Block Kit messages, at most about one per second per webhook.

ref: api.slack.com/apis/rate-limits (incoming webhooks: 1 message per second, short bursts
allowed; HTTP 429 with ``Retry-After`` beyond that).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

from detectors.model import Alert
from worker.alerting.http import post
from worker.alerting.render import slack_message


class SlackSink:
    """Posts alerts to one Slack incoming webhook, spacing messages ``min_interval_s`` apart."""

    name = "slack"

    def __init__(self, http: httpx.AsyncClient, url: str, min_interval_s: float = 1.0) -> None:
        self.http, self.url, self.min_interval_s = http, url, min_interval_s
        self._lock = asyncio.Lock()
        self._last = float("-inf")

    async def send(self, alert: Alert, contact: str | None = None) -> None:
        """One attempt; raises ``DeliveryError`` (429 carries the wait)."""
        body = orjson.dumps(slack_message(alert, contact))
        async with self._lock:  # one message at a time, spaced: Slack's per-webhook rate
            wait = self._last + self.min_interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await post(self.http, self.name, self.url, body,
                           {"content-type": "application/json"})  # fmt: skip
            finally:
                self._last = time.monotonic()

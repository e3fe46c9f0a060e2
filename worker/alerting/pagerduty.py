"""PagerDuty Events API v2: trigger for high and critical alerts, resolve when a throttle lifts.

One incident per key at a time: while a key's incident is open, later alerts on the key reuse its
``dedup_key`` (PagerDuty adds them to the same incident); ``resolve`` closes it when the key's
throttle is lifted. Open incidents are remembered in process memory only: after a restart a
lifted throttle cannot resolve an incident opened before it (it stays open for a person).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from worker.alerting.http import post
from worker.alerting.render import pagerduty_resolve, pagerduty_trigger

HEADERS = {"content-type": "application/json"}


def dedup_key(key_id: str, alert_id: str) -> str:
    """The incident key: the key and the alert that opened the incident."""
    return f"keywatch/{key_id}/{alert_id}"


class PagerDutySink:
    """Sends Events v2 to one routing key."""

    name = "pagerduty"

    def __init__(self, http: httpx.AsyncClient, url: str, routing_key: str) -> None:
        self.http, self.url, self.routing_key = http, url, routing_key
        self.open: dict[str, str] = {}  # key id -> dedup key of its open incident

    def incident_for(self, alert: Mapping[str, Any]) -> str:
        """The dedup key this alert belongs to (the key's open incident, or a new one)."""
        key_id = str(alert.get("key_id") or "none")
        return self.open.get(key_id) or dedup_key(key_id, str(alert.get("id")))

    async def send(self, alert: Mapping[str, Any], contact: str | None = None) -> None:
        """One trigger attempt on the key's incident (claimed first, so concurrent alerts on
        one key share it; resolving an incident PagerDuty never opened is harmless)."""
        dedup = self.incident_for(alert)
        if alert.get("key_id"):
            dedup = self.open.setdefault(str(alert["key_id"]), dedup)
        event = pagerduty_trigger(alert, self.routing_key, dedup, contact)
        await post(self.http, self.name, self.url, orjson.dumps(event), HEADERS)

    def resolving(self, key_id: str) -> str | None:
        """The dedup key to resolve for ``key_id``, if it has an open incident."""
        return self.open.get(key_id)

    async def resolve(self, key_id: str) -> None:
        """One resolve attempt for the key's open incident (nothing when none is open)."""
        dedup = self.open.get(key_id)
        if dedup is None:
            return
        event = pagerduty_resolve(self.routing_key, dedup)
        await post(self.http, self.name, self.url, orjson.dumps(event), HEADERS)
        self.open.pop(key_id, None)

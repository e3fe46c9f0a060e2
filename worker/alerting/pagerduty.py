"""PagerDuty Events API v2: trigger for high and critical alerts, resolve when a throttle lifts.

One incident per key at a time: while a key's incident is open, later alerts on the key reuse its
``dedup_key`` (PagerDuty adds them to the same incident); ``resolve`` closes it when the key's
throttle is lifted. Open incidents are kept in SQL when a ``state`` is given (the key store's
``kw_pagerduty_open``), so a restarted worker still resolves the incidents it opened; while the
database is down they are kept in memory and written at the next chance.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httpx
import orjson
import structlog

from core.errors import KeyStoreError
from core.redaction import redact_text
from detectors.model import Alert
from worker.alerting.http import post
from worker.alerting.render import pagerduty_resolve, pagerduty_trigger

log = structlog.get_logger("keywatch.alerting")

HEADERS = {"content-type": "application/json"}


def dedup_key(key_id: str, alert_id: str) -> str:
    """The incident key: the key and the alert that opened the incident (redacted: both come
    from the alert, and a sender may put a key where an id belongs)."""
    return redact_text(f"keywatch/{key_id}/{alert_id}")


class OpenIncidents(Protocol):
    """Where open incidents survive restarts (``worker.keystore.alerts.AlertStore``)."""

    def pagerduty_open(self) -> dict[str, str]:
        """Key id -> dedup key of every open incident."""
        ...

    def pagerduty_claim(self, key_id: str, dedup_key: str) -> str:
        """The key's open dedup key, recording ``dedup_key`` when it has none."""
        ...

    def pagerduty_release(self, key_id: str) -> None:
        """Forget the key's incident."""
        ...


class PagerDutySink:
    """Sends Events v2 to one routing key."""

    name = "pagerduty"

    def __init__(
        self, http: httpx.AsyncClient, url: str, routing_key: str,
        state: OpenIncidents | None = None,
    ) -> None:  # fmt: skip
        self.http, self.url, self.routing_key = http, url, routing_key
        self.open: dict[str, str] = {}  # key id -> dedup key of its open incident
        self.state = state
        self._loaded = state is None

    async def load(self) -> None:
        """Read the open incidents from SQL once (retried at the next call while it is down)."""
        if self._loaded or self.state is None:
            return
        try:
            stored = await asyncio.to_thread(self.state.pagerduty_open)
        except KeyStoreError as exc:
            log.warning("pagerduty_state_unavailable", error=str(exc))
            return
        self.open = {**stored, **self.open}
        self._loaded = True

    async def _claim(self, key_id: str, dedup: str) -> str:
        if self.state is None:
            return dedup
        try:
            return await asyncio.to_thread(self.state.pagerduty_claim, key_id, dedup)
        except KeyStoreError as exc:  # memory holds it; the next alert on the key writes it
            log.warning("pagerduty_state_unavailable", error=str(exc))
            return dedup

    def incident_for(self, alert: Alert) -> str:
        """The dedup key this alert belongs to (the key's open incident, or a new one)."""
        key_id = alert.key_id or "none"
        return self.open.get(key_id) or dedup_key(key_id, alert.id)

    async def send(self, alert: Alert, contact: str | None = None) -> None:
        """One trigger attempt on the key's incident (claimed first, so concurrent alerts on
        one key share it; resolving an incident PagerDuty never opened is harmless)."""
        await self.load()
        dedup = self.incident_for(alert)
        if alert.key_id:
            key_id = alert.key_id
            dedup = self.open.setdefault(key_id, dedup)
            self.open[key_id] = dedup = await self._claim(key_id, dedup)
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
        if self.state is not None:
            try:
                await asyncio.to_thread(self.state.pagerduty_release, key_id)
            except KeyStoreError as exc:  # resolving it again later is harmless
                log.warning("pagerduty_state_unavailable", error=str(exc))

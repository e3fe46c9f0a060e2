"""Resolving an alert: the verdict in SQL, then what it means for the key.

``benign`` lifts the throttle the incident caused (announced ``unthrottle``); ``compromised``
revokes the key (idempotent). The verdict commits first; a repeat (a crash in between, the same
button pressed twice) records nothing new and re-applies the key action, which is idempotent.
"""

from __future__ import annotations

import asyncio

from worker.keystore.alerts import AlertStore, Resolution
from worker.keystore.service import KeyService


class Resolver:
    """Applies verdicts through the alert store and the key service."""

    def __init__(self, alerts: AlertStore, keys: KeyService) -> None:
        self.alerts, self.keys = alerts, keys

    async def resolve(
        self, alert_id: str, verdict: str, actor: str, note: str | None = None,
        *, publish: bool = True,
    ) -> Resolution:  # fmt: skip
        """Record the verdict and act on the key; raises KeyStoreUnavailable while SQL is down."""
        res = await asyncio.to_thread(
            self.alerts.resolve, alert_id, verdict, actor, note, publish=publish
        )
        actor = actor[:64]
        if verdict == "benign" and res.throttled_by_incident:
            reason = f"alert {alert_id} resolved benign by {actor}"
            await self.keys.unthrottle(res.key_id, reason[:500], actor=actor)
        elif verdict == "compromised":
            reason = f"alert {alert_id} confirmed compromised by {actor}"
            await self.keys.revoke(res.key_id, reason[:500], actor=actor, alert_id=alert_id)
        return res

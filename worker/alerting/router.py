"""Routes each alert to the sinks its severity reaches, with retries, in parallel per sink.

A sink that still fails after its retries sends the alert to the dead letter with reason
``delivery_failed:<sink>``; the other sinks are unaffected. Delivery runs in its own agent, so a
slow or failing sink never holds up detection or key actions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import httpx
import structlog

from core.errors import DeliveryGaveUp
from core.retry import RetryPolicy
from detectors.model import Alert
from detectors.policy import RulesPolicy
from detectors.routing import Routing, reaches
from worker.alerting.http import client
from worker.alerting.pagerduty import OpenIncidents, PagerDutySink
from worker.alerting.retry import with_retries
from worker.alerting.slack import SlackSink
from worker.alerting.webhook import WebhookSink
from worker.metrics import Metrics
from worker.settings import Settings

log = structlog.get_logger("keywatch.alerting")

DeadLetter = Callable[[str, str, Any, str], Awaitable[None]]
ContactLookup = Callable[[str], Awaitable[str | None]]
SINK_CONCURRENCY = {"slack": 1, "webhook": 4, "pagerduty": 4}


class Sink(Protocol):
    """An alert destination; ``send`` is one attempt and raises ``DeliveryError``."""

    name: str

    async def send(self, alert: Alert, contact: str | None = None) -> None:
        """Deliver once."""
        ...


class Router:
    """Delivers alerts to every sink whose minimum severity they reach."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        routing: Routing,
        retry: RetryPolicy,
        dead_letter: DeadLetter,
        *,
        metrics: Metrics | None = None,
        contact: ContactLookup | None = None,
    ) -> None:
        self.sinks, self.routing, self.retry = list(sinks), dict(routing), retry
        self.dead_letter, self.metrics, self.contact = dead_letter, metrics, contact
        self._limits = {s.name: asyncio.Semaphore(SINK_CONCURRENCY.get(s.name, 2)) for s in sinks}

    def targets(self, alert: Alert, only: str | None = None) -> list[Sink]:
        """The sinks this alert goes to (``only``: that sink, if the alert reaches it)."""
        return [s for s in self.sinks if reaches(self.routing, s.name, alert.severity)
                and only in (None, s.name)]  # fmt: skip

    async def deliver(self, alert: Alert, only: str | None = None) -> dict[str, str]:
        """Deliver to every target (or ``only`` one) concurrently; ``{sink: outcome}``."""
        targets = self.targets(alert, only)
        if not targets:
            return {}
        contact = await self._contact(alert)
        results = await asyncio.gather(*(self._one(s, alert, contact) for s in targets))
        return {s.name: r for s, r in zip(targets, results, strict=True)}

    async def resolve(self, key_id: str) -> bool:
        """Resolve the key's open PagerDuty incident (a lifted throttle); True if one was sent."""
        pd = next((s for s in self.sinks if isinstance(s, PagerDutySink)), None)
        if pd is not None:
            await pd.load()
        if pd is None or pd.resolving(key_id) is None:
            return False
        msg = {"id": f"resolve:{key_id}", "key_id": key_id, "event_action": "resolve"}
        outcome = await self._attempts(pd, msg["id"], msg, lambda: pd.resolve(key_id))
        return outcome == "delivered"

    async def _one(self, sink: Sink, alert: Alert, contact: str | None) -> str:
        message = alert.to_dict()  # the alert's JSON, for the dead letter
        return await self._attempts(sink, alert.id, message, lambda: sink.send(alert, contact))

    async def _attempts(
        self, sink: Sink, alert_id: str, message: dict[str, Any],
        send: Callable[[], Awaitable[None]],
    ) -> str:  # fmt: skip
        """``send`` with retries; ``message`` (the alert's JSON) goes to the dead letter."""
        async with self._limits[sink.name]:
            try:
                attempts = await with_retries(send, self.retry)
                outcome = "delivered"
                log.info("alert_delivered", sink=sink.name, alert_id=alert_id,
                         attempts=attempts)  # fmt: skip
            except DeliveryGaveUp as exc:
                outcome = "failed"
                log.warning("delivery_failed", sink=sink.name, alert_id=alert_id,
                            error=str(exc))  # fmt: skip
                await self.dead_letter(f"delivery_failed:{sink.name}", "delivery", message,
                                       str(exc))  # fmt: skip
        if self.metrics is not None:
            self.metrics.deliveries.labels(sink=sink.name, outcome=outcome).inc()
        return outcome

    async def _contact(self, alert: Alert) -> str | None:
        key_id = alert.key_id
        if self.contact is None or not key_id:
            return None
        try:
            return await self.contact(key_id)
        except Exception as exc:  # the owner's address is a nicety: never block delivery on it
            log.warning("contact_lookup_failed", key_id=key_id, error=str(exc))
            return None


def build_sinks(
    settings: Settings, policy: RulesPolicy, http: httpx.AsyncClient,
    pagerduty_state: OpenIncidents | None = None,
) -> list[Sink]:  # fmt: skip
    """The sinks configured in the settings (none configured: no sinks)."""
    sinks: list[Sink] = []
    if settings.slack_webhook_url:
        interval = policy.delivery.slack_min_interval_s
        sinks.append(SlackSink(http, settings.slack_webhook_url, interval))
    if settings.webhook_url and settings.webhook_secret:
        sinks.append(WebhookSink(http, settings.webhook_url, settings.webhook_secret))
    if settings.pagerduty_routing_key:
        key = settings.pagerduty_routing_key
        sinks.append(PagerDutySink(http, settings.pagerduty_url, key, pagerduty_state))
    return sinks


def build_router(
    settings: Settings,
    policy: RulesPolicy,
    dead_letter: DeadLetter,
    *,
    metrics: Metrics | None = None,
    contact: ContactLookup | None = None,
    http: httpx.AsyncClient | None = None,
    pagerduty_state: OpenIncidents | None = None,
) -> tuple[Router, httpx.AsyncClient]:
    """A router over the configured sinks and the HTTP client it uses (close it at shutdown)."""
    http = http or client()
    sinks = build_sinks(settings, policy, http, pagerduty_state)
    router = Router(sinks, policy.routing, policy.delivery, dead_letter,
                    metrics=metrics, contact=contact)  # fmt: skip
    return router, http

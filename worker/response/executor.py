"""Applies an alert's action to its key: throttle or revoke through ``KeyService``.

At-least-once and idempotent: the key store dedupes (a key is revoked once; one alert throttles
once), so an alert seen twice changes nothing the second time. While the database is down the
executor waits and retries forever: ``execute`` returns only when the action is committed in SQL,
so the calling agent never commits past it. The Redis view and the ``keywatch.key-actions``
announcement are committed with it as an outbox entry and pushed at once when Redis and the broker
answer, else by the reconciler when they return: a Redis outage never holds up the next alert's
SQL revocation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from core.errors import InputError, KeyNotFound, KeyStoreError, KeyStoreUnavailable
from core.redaction import redact_text
from core.retry import OnRetry, RetryPolicy
from detectors.auth_abuse import is_network
from detectors.model import Alert
from worker.keystore.service import STORE_RETRY, KeyService
from worker.keystore.store import Change
from worker.messages import alert_from_dict
from worker.metrics import Metrics

log = structlog.get_logger("keywatch.response")

DeadLetter = Callable[[str, str, Any, str], Awaitable[None]]
Status = Literal["applied", "unchanged", "skipped", "dead_letter"]
KEY_ACTIONS = ("throttle", "revoke")
ACTIONS = ("log", "notify", "throttle", "revoke")
MAX_REASON = 500  # the store's reason column holds 512 characters


@dataclass(frozen=True, slots=True)
class ActionPlan:
    """What to do to which key, and why."""

    action: Literal["throttle", "revoke"]
    key_id: str
    alert_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What ``execute`` did with one alert."""

    status: Status
    action: str | None = None
    attempts: int = 0
    detail: str = ""


def plan_action(alert: Alert) -> ActionPlan | None:
    """The key action an alert asks for (None for log/notify); ``InputError`` when unusable."""
    if alert.action not in KEY_ACTIONS:
        return None
    if not alert.key_id:
        raise InputError(f"{alert.action} alert without a key_id", reason="bad_alert")
    if is_network(alert.key_id) or alert.kind == "auth_abuse":
        return None  # a client network, not a key: nothing here to throttle or revoke
    if not alert.id:
        raise InputError(f"{alert.action} alert without an id", reason="bad_alert")
    action: Literal["throttle", "revoke"] = "revoke" if alert.action == "revoke" else "throttle"
    return ActionPlan(action, alert.key_id, alert.id, action_reason(alert))


def action_reason(alert: Alert) -> str:
    """A reason naming the alert's kind, severity, signal types and id (redacted, bounded)."""
    types = sorted({s.type for s in alert.signals})
    text = (
        f"keywatch {alert.severity} {alert.kind}: {'+'.join(types) or 'no signals'} "
        f"(alert {alert.id})"
    )
    return redact_text(text)[:MAX_REASON]


class Executor:
    """Runs alert actions against the key service with retry-forever on unavailability."""

    def __init__(
        self,
        keys: KeyService,
        *,
        throttle_ttl_s: float,
        dead_letter: DeadLetter,
        metrics: Metrics | None = None,
        retry: RetryPolicy = STORE_RETRY,
        on_retry: OnRetry | None = None,
        test_max_action: str = "notify",
    ) -> None:
        self.keys = keys
        self.throttle_ttl_s = throttle_ttl_s
        self.dead_letter = dead_letter
        self.metrics = metrics
        self.retry = retry  # no attempt limit: the action waits for the database
        self.on_retry = on_retry
        # The alert's action was decided with the key's context as the profile stage saw it,
        # which is a "live" default when the key store was down then: the environment is
        # checked again here, from SQL, before anything is done to the key.
        self.test_max_action = test_max_action

    async def execute(self, message: Mapping[str, Any]) -> Outcome:
        """Apply the alert message's action; returns only when it is done (or dead-lettered)."""
        try:
            alert = alert_from_dict(message)
        except InputError as exc:
            await self.dead_letter(exc.reason, "response", _payload(message), str(exc))
            return Outcome("dead_letter", detail=exc.reason)
        return await self.apply(alert, message)

    async def apply(self, alert: Alert, message: Mapping[str, Any]) -> Outcome:
        """Apply a decoded alert's action (``message``: its JSON object, for dead letters)."""
        try:
            plan = plan_action(alert)
        except InputError as exc:
            await self.dead_letter(exc.reason, "response", dict(message), str(exc))
            return Outcome("dead_letter", detail=exc.reason)
        if plan is None:
            return Outcome("skipped", action=alert.action)
        return await self._run(plan, message)

    async def _run(self, plan: ActionPlan, alert: Mapping[str, Any]) -> Outcome:
        attempts = 0

        async def once() -> tuple[ActionPlan | None, bool]:
            nonlocal attempts
            attempts += 1
            # the SQL change and its outbox entry commit together; KeyService drains the
            # outbox quietly and the reconciler retries what Redis or the broker refused
            capped = await self._capped(plan)
            return capped, capped is not None and (await self._apply(capped)).changed

        async def retrying(attempt: int, exc: BaseException) -> None:
            log.warning("action_retry", action=plan.action, key_id=plan.key_id,
                        attempt=attempt, error=str(exc))  # fmt: skip
            if self.on_retry is not None:
                await self.on_retry(attempt, exc)

        try:
            (capped, changed), _ = await self.retry.call(once, KeyStoreUnavailable,
                                                         on_retry=retrying)  # fmt: skip
        except KeyNotFound as exc:
            await self.dead_letter("unknown_key", "response", dict(alert), str(exc))
            return Outcome("dead_letter", plan.action, attempts, "unknown_key")
        except KeyStoreError as exc:
            await self.dead_letter("action_failed", "response", dict(alert), str(exc))
            return Outcome("dead_letter", plan.action, attempts, str(exc))
        if capped is None:
            return Outcome("skipped", plan.action, attempts, "not a live key")
        if changed and self.metrics is not None:
            self.metrics.actions.labels(action=capped.action).inc()
        log.info("key_action", action=capped.action, key_id=capped.key_id,
                 alert_id=capped.alert_id, changed=changed, attempts=attempts)  # fmt: skip
        return Outcome("applied" if changed else "unchanged", capped.action, attempts)

    async def _capped(self, plan: ActionPlan) -> ActionPlan | None:
        """The plan allowed for the key's environment: a key not known to be live gets at most
        ``test_max_action`` (None: nothing is done to the key)."""
        record = await asyncio.to_thread(self.keys.store.get, plan.key_id)
        if record.environment == "live" or ACTIONS.index(plan.action) <= ACTIONS.index(
            self.test_max_action
        ):
            return plan
        done = self.test_max_action if self.test_max_action in KEY_ACTIONS else None
        log.info("action_capped", key_id=plan.key_id, environment=record.environment,
                 asked=plan.action, done=done or self.test_max_action)  # fmt: skip
        return ActionPlan("throttle", plan.key_id, plan.alert_id, plan.reason) if done else None

    async def _apply(self, plan: ActionPlan) -> Change:
        if plan.action == "revoke":
            return await self.keys.revoke(
                plan.key_id, plan.reason, actor="keywatch-response", alert_id=plan.alert_id
            )
        return await self.keys.throttle(
            plan.key_id, self.throttle_ttl_s, plan.reason,
            actor="keywatch-response", alert_id=plan.alert_id,
        )  # fmt: skip


def _payload(message: Any) -> Any:
    """The dead letter's copy of a message (a mapping copied, anything else as it came)."""
    return dict(message) if isinstance(message, Mapping) else message

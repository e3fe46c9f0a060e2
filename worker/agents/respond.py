"""Response agents (thin): key actions, alert delivery and PagerDuty resolves.

- actions: ``keywatch.alerts`` -> throttle/revoke through the executor; waits for the key store
  and does not take the next alert until the action is done (offsets never pass it).
- delivery: ``keywatch.alerts`` and ``keywatch.leaks`` -> Slack, webhook, PagerDuty (one agent
  per sink and topic, so a slow sink never holds up actions, detection or the other sinks).
- resolve: ``keywatch.key-actions`` ``unthrottle`` -> resolve the key's PagerDuty incident.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faust import StreamT

from core.errors import InputError
from core.retry import RetryPolicy
from detectors.model import Alert
from detectors.policy_file import load_policy
from worker.alerting.router import Router, build_router
from worker.app import WorkerApp
from worker.keystore.alerts import AlertStore
from worker.messages import KeyAction, alert_from_dict, key_action_from_dict, loads
from worker.response.executor import KEY_ACTIONS, Executor

DELIVERY_CONCURRENCY = 4
log = structlog.get_logger("keywatch.response")


# Any error: a broker error from a dead letter or an announcement must neither stop the
# agent nor skip the alert (actions are idempotent, so the retry is safe).
HANDLING_RETRY = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0)


async def until_done(
    fn: Callable[[Any], Awaitable[None]], value: Any, retry: RetryPolicy = HANDLING_RETRY
) -> None:
    """``fn(value)``, retried with backoff on any error until it succeeds."""

    async def failed(attempt: int, exc: BaseException) -> None:
        log.error("action_retry", error=repr(exc), attempt=attempt)

    await retry.call(lambda: fn(value), Exception, on_retry=failed)


def register(app: WorkerApp) -> None:
    """Add the response agents to the worker (the policy is loaded and validated here)."""
    s = app.settings
    policy = load_policy(s.policy_file, dry_run=s.dry_run)
    executor = Executor(app.keys, throttle_ttl_s=policy.throttle_ttl_s,
                        dead_letter=app.dead_letter, metrics=app.metrics,
                        test_max_action=policy.test_max_action)  # fmt: skip

    async def contact(key_id: str) -> str | None:
        return (await asyncio.to_thread(app.store.get, key_id)).contact

    router, _http = build_router(s, policy, app.dead_letter, metrics=app.metrics, contact=contact,
                                 pagerduty_state=AlertStore(app.store))  # fmt: skip
    leaks_topic = app.app.topic(s.topics.leaks, internal=True)

    async def act(value: Any) -> None:
        message = loads(value)
        if message is None:
            await app.dead_letter("bad_alert", "response", value, "not a JSON object")
            return
        try:
            alert = alert_from_dict(message)
        except InputError as exc:
            await app.dead_letter(exc.reason, "response", message, str(exc))
            return
        if alert.action in KEY_ACTIONS:
            await app.store_ready.wait()
            await executor.apply(alert, message)

    @app.app.agent(app.alerts_topic, name="keywatch.response.actions")
    async def actions(stream: StreamT[Any]) -> None:
        async for value in stream:
            await until_done(act, value)

    # One delivery agent per sink and topic: a hanging Slack never holds up PagerDuty.
    for sink in router.sinks:
        _delivery_agent(app, router, sink.name, app.alerts_topic,
                        f"keywatch.response.deliver-alerts-{sink.name}")  # fmt: skip
        _delivery_agent(app, router, sink.name, leaks_topic,
                        f"keywatch.response.deliver-leaks-{sink.name}")  # fmt: skip

    @app.app.agent(app.key_actions_topic, name="keywatch.response.resolve")
    async def resolve(stream: StreamT[Any]) -> None:
        async for value in stream:
            action = _key_action(value)
            if action is not None and action.action == "unthrottle" and action.key_id:
                await router.resolve(action.key_id)


def _delivery_agent(app: WorkerApp, router: Router, sink: str, topic: Any, name: str) -> None:
    @app.app.agent(topic, name=name, concurrency=DELIVERY_CONCURRENCY)
    async def deliver(stream: StreamT[Any]) -> None:
        async for value in stream:
            alert = _alert(value)
            if alert is not None:  # the actions agent dead-letters the rest
                await router.deliver(alert, only=sink)


def _alert(value: Any) -> Alert | None:
    """An alert message decoded once into the typed ``Alert``, or None when it is not one."""
    message = loads(value)
    if message is None:
        return None
    try:
        return alert_from_dict(message)
    except InputError:
        return None


def _key_action(value: Any) -> KeyAction | None:
    """A key-action message, or None (logged) when it is not one: this agent only reads."""
    message = loads(value)
    try:
        return key_action_from_dict(message)
    except InputError as exc:
        log.warning("bad_key_action", error=str(exc))
        return None

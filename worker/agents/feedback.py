"""Alerts people answer: alerts into SQL, verdicts back into the key's profile.

- record: ``keywatch.alerts`` -> ``kw_alerts`` / ``kw_incidents`` (idempotent upsert by alert id;
  waits for the database, so an outage delays the list, never loses an alert).
- feedback: ``keywatch.feedback`` (keyed by key id, partitioned with ``partition_for`` like the
  profiles table, so this worker owns the key's profile) -> the verdict in SQL (waits while the
  database is down: the offset does not pass the message) -> for ``benign``, the profile learns
  what the alert was about (``detectors.feedback``) and goes to the changelog at once, and the
  key's PagerDuty incident is resolved -> the Slack message that asked is updated.
- timers: publish resolutions queued in SQL by ``keywatch alerts resolve`` (the outbox), and
  expire incidents idle for ``incident_idle_s``.
- ``POST /slack/interactions``: verified, queued in the SQL feedback outbox (committed before
  Slack gets its 200; published on ``keywatch.feedback`` by the outbox timer, so a broker outage
  delays the verdict, never loses it), then acknowledged; 503 while the database is down, so
  the person pressing sees that it did not take.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import orjson
import structlog
from faust.web import Request, Response, View

from core.errors import DeliveryError, InputError, InvalidTransition, KeyStoreUnavailable
from core.retry import RetryPolicy
from detectors.auth_abuse import is_network
from detectors.feedback import apply_benign
from worker.agents.profiles import live_profile
from worker.alerting import interactions
from worker.alerting.http import client, post
from worker.alerting.pagerduty import PagerDutySink
from worker.alerting.retry import with_retries
from worker.keystore.alerts import AlertNotFound, AlertStore, Resolution
from worker.keystore.resolution import Resolver
from worker.keystore.service import STORE_RETRY
from worker.messages import Feedback, feedback_from_dict, is_alert, loads, to_dict
from worker.partitioning import partition_for

if TYPE_CHECKING:
    from faust import StreamT

    from worker.app import WorkerApp

log = structlog.get_logger("keywatch.feedback")
T = TypeVar("T")
MAX_INTERACTION_BYTES = 256 * 1024
# A PagerDuty outage must not hold the key's verdicts for long: a few tries, then a log line.
PAGERDUTY_RETRY = RetryPolicy(attempts=3, base_delay_s=0.5, max_delay_s=5.0, timeout_s=15.0)
# an answer may outrun its alert's recording by a few seconds, not more
UNRECORDED_RETRY = RetryPolicy(attempts=9, base_delay_s=0.25, max_delay_s=5.0)


def check_resolution(msg: Mapping[str, Any]) -> Feedback:
    """``msg`` as a resolution; ``InputError`` naming the field when it is not a usable one."""
    feedback = feedback_from_dict(msg)
    if feedback.type != "resolution":
        raise InputError(f"feedback type {feedback.type!r} is not known", reason="bad_feedback")
    for name in ("alert_id", "key_id", "actor"):
        if not getattr(feedback, name):
            raise InputError(f"resolution without {name}", reason="bad_feedback")
    return feedback


async def until_stored(
    fn: Callable[[], Awaitable[T]], what: str, retry: RetryPolicy = STORE_RETRY
) -> T:
    """Await ``fn`` until the database answers (as the executor does for key actions)."""

    async def waiting(attempt: int, exc: BaseException) -> None:
        log.warning("store_retry", what=what, attempt=attempt, error=str(exc))

    result, _ = await retry.call(fn, KeyStoreUnavailable, on_retry=waiting)
    return result


class FeedbackHandler:
    """One resolution message: SQL verdict, profile learning, PagerDuty and Slack updates."""

    def __init__(
        self, kapp: WorkerApp, resolver: Resolver, http: httpx.AsyncClient,
        pagerduty: PagerDutySink | None = None,
    ) -> None:  # fmt: skip
        self.kapp, self.resolver, self.http, self.pagerduty = kapp, resolver, http, pagerduty

    async def handle(self, msg: dict[str, Any]) -> str:
        """Apply one message; returns what happened (for logs and tests)."""
        try:
            fb = check_resolution(msg)
        except InputError as exc:
            await self.kapp.dead_letter(exc.reason, "feedback", msg, str(exc))
            return "dead_letter"
        await self.kapp.store_ready.wait()
        try:
            res = await self._resolve(fb)
        except (AlertNotFound, InvalidTransition, InputError) as exc:
            await self.kapp.dead_letter("resolution_refused", "feedback", msg, str(exc))
            await self._answer(fb, f"not applied: {exc}")
            return "refused"
        if res.verdict == "benign":
            self._teach(res)
            await self._checkpoint()
            await self._close_pagerduty(res.key_id)
        await self._answer(fb)
        if res.changed:
            self.kapp.metrics.verdicts.labels(verdict=res.verdict).inc()
        log.info("alert_resolved", alert_id=res.alert_id, key_id=res.key_id,
                 verdict=res.verdict, actor=fb.actor, changed=res.changed)  # fmt: skip
        return res.verdict

    async def _resolve(self, fb: Feedback) -> Resolution:
        """The verdict in SQL; an answer may outrun its alert's recording by a few seconds."""
        resolution, _ = await UNRECORDED_RETRY.call(lambda: until_stored(
            lambda: self.resolver.resolve(fb.alert_id, fb.verdict, fb.actor, fb.note,
                                          publish=False), "resolution"),
            AlertNotFound)  # fmt: skip
        return resolution

    def _teach(self, res: Resolution) -> None:
        table = self.kapp.profiles
        if is_network(res.key_id):  # a per-network alert (auth.enumeration): no key profile
            return
        profile = live_profile(table.get(res.key_id))
        if profile is None:  # no traffic seen for the key: nothing to teach
            return
        learned = apply_benign(profile, res.signals, res.ts)
        table[res.key_id] = profile
        log.info("profile_taught", key_id=res.key_id, types=learned)

    async def _checkpoint(self) -> None:
        """Write the taught profile to the changelog now (a crash must not forget it)."""
        if self.kapp.profile_checkpoint is not None:
            await self.kapp.profile_checkpoint.flush()

    async def _close_pagerduty(self, key_id: str) -> None:
        """Resolve the key's PagerDuty incident: a person said it was fine (a compromise stays
        open for whoever handles it). The open incidents are read from SQL, where every worker
        keeps them."""
        pd = self.pagerduty
        if pd is None:
            return
        try:
            dedup = (await asyncio.to_thread(self.resolver.alerts.pagerduty_open)).get(key_id)
            if dedup is not None:
                pd.open[key_id] = dedup
                await with_retries(lambda: pd.resolve(key_id), PAGERDUTY_RETRY)
        except (KeyStoreUnavailable, DeliveryError) as exc:
            log.warning("pagerduty_resolve_failed", key_id=key_id, error=str(exc))

    async def _answer(self, fb: Feedback, detail: str = "") -> None:
        url = fb.response_url
        if not url:
            return
        body = interactions.resolved_message(fb.message, fb.verdict, fb.actor,
                                             detail)  # fmt: skip
        try:
            await post(self.http, "slack", url, orjson.dumps(body),
                       {"content-type": "application/json"})  # fmt: skip
        except DeliveryError as exc:  # the verdict stands; only the message stays as it was
            log.warning("slack_update_failed", alert_id=fb.alert_id, error=str(exc))


def register(kapp: WorkerApp) -> None:
    """Add the record and feedback agents, their timers and ``/slack/interactions``."""
    s = kapp.settings
    alerts = AlertStore(kapp.store)
    http = client()
    pagerduty = None
    if s.pagerduty_routing_key:
        pagerduty = PagerDutySink(http, s.pagerduty_url, s.pagerduty_routing_key, alerts)
    handler = FeedbackHandler(kapp, Resolver(alerts, kapp.keys), http, pagerduty)
    topic = kapp.app.topic(s.topics.feedback, internal=True, partitions=s.partitions)

    async def send_feedback(message: Mapping[str, Any]) -> None:
        key_id = str(message["key_id"])
        await kapp.produce(topic, orjson.dumps(message), key_id.encode(),
                           partition_for(key_id, s.partitions))  # fmt: skip

    @kapp.app.agent(kapp.alerts_topic, name="keywatch.alerts.record")
    async def record(stream: StreamT[Any]) -> None:
        async for value in stream:
            alert = loads(value)
            if alert is None or not is_alert(alert):
                continue  # the response agent dead-letters it
            await kapp.store_ready.wait()
            try:
                await until_stored(_recorder(alerts, alert, s.incident_idle_s), "record_alert")
            except InputError as exc:
                await kapp.dead_letter(exc.reason, "alerts", alert, str(exc))
            except Exception as exc:  # e.g. a field the database refuses: never kill the agent
                log.exception("record_failed", error=repr(exc))
                await kapp.dead_letter("record_failed", "alerts", alert, repr(exc))

    @kapp.app.agent(topic, name="keywatch.feedback")
    async def feedback(stream: StreamT[Any]) -> None:
        async for value in stream:
            msg = loads(value)
            if msg is None:
                await kapp.dead_letter("bad_feedback", "feedback", value, "not a JSON object")
                continue
            try:
                await handler.handle(msg)
            except Exception as exc:  # never kill the agent on one message
                log.exception("feedback_failed", error=repr(exc))
                await kapp.dead_letter("feedback_failed", "feedback", msg, repr(exc))

    async def publish_resolutions() -> None:
        if kapp.store_ready.is_set():
            await publish_pending(alerts, send_feedback)

    async def expire_incidents() -> None:
        if kapp.store_ready.is_set():
            try:
                await asyncio.to_thread(alerts.expire_idle, s.incident_idle_s)
            except KeyStoreUnavailable as exc:
                log.warning("incident_expiry_retry", error=str(exc))

    kapp.app.timer(1.0)(publish_resolutions)
    kapp.app.timer(30.0)(expire_incidents)
    _install_interactions(kapp, alerts)


async def publish_pending(
    alerts: AlertStore, send: Callable[[Mapping[str, Any]], Awaitable[None]]
) -> int:
    """Publish the queued resolutions oldest first; returns how many went out. An entry is
    deleted only once the broker took it: a failure leaves it (and those after it, to keep
    their order) for the next tick. Never raises: it runs on a timer."""
    sent = 0
    try:
        for entry in await asyncio.to_thread(alerts.pending_feedback):
            await send(entry.payload)
            await asyncio.to_thread(alerts.feedback_done, entry.id)
            sent += 1
    except KeyStoreUnavailable as exc:
        log.warning("feedback_outbox_retry", error=str(exc))
    except Exception as exc:  # the broker (KafkaError, timeouts): the entry waits in SQL
        log.warning("feedback_publish_retry", error=repr(exc), published=sent)
    return sent


def slack_resolution(verdict: interactions.Verdict) -> dict[str, Any]:
    """The ``keywatch.feedback`` message for a Slack button press."""
    return to_dict(feedback_from_dict({
        "type": "resolution", "alert_id": verdict.alert_id, "key_id": verdict.key_id,
        "verdict": verdict.verdict, "actor": verdict.actor, "note": "via Slack",
        "ts": time.time(), "response_url": verdict.response_url, "message": verdict.message,
    }))  # fmt: skip


async def accept_slack(
    secret: str, headers: Mapping[str, str], body: bytes, alerts: AlertStore
) -> tuple[int, dict[str, str] | None, str]:
    """One ``/slack/interactions`` request: (status, JSON body or None, outcome for metrics).

    The press is committed to the feedback outbox before the 200: Slack never retries an
    interaction, so an answer of 200 must mean the verdict will be applied."""
    try:
        interactions.verify(secret, headers, body)
        verdict = interactions.parse(body)
    except interactions.SignatureError as exc:
        return 401, {"error": str(exc)}, "bad_signature"
    except InputError as exc:
        return 400, {"error": str(exc)}, "bad_request"
    try:
        await asyncio.to_thread(alerts.queue_feedback, slack_resolution(verdict))
    except KeyStoreUnavailable as exc:
        log.error("slack_verdict_not_queued", alert_id=verdict.alert_id, error=str(exc))
        return (
            503,
            {"error": "keywatch cannot record the verdict right now; try again"},
            "unavailable",
        )
    return 200, None, "accepted"


def _recorder(
    alerts: AlertStore, alert: dict[str, Any], idle_s: float
) -> Callable[[], Awaitable[bool]]:
    return lambda: asyncio.to_thread(alerts.record, alert, idle_s)


def _install_interactions(kapp: WorkerApp, alerts: AlertStore) -> None:
    secret = kapp.settings.slack_signing_secret

    class SlackInteractions(View):
        async def post(self, request: Request) -> Response:
            if not secret:
                return self.json({"error": "KEYWATCH_SLACK_SIGNING_SECRET is not set"}, status=503)
            body = await _read(request)
            if body is None:
                return self.json({"error": "too large"}, status=413)
            status, answer, outcome = await accept_slack(secret, dict(request.headers), body,
                                                         alerts)  # fmt: skip
            if outcome in ("bad_signature", "accepted"):
                kapp.metrics.webhooks.labels(source="slack", outcome=outcome).inc()
            if answer is None:
                return self.bytes(b"", status=status)
            return self.json(answer, status=status)

    kapp.app.page("/slack/interactions")(SlackInteractions)


async def _read(request: Any) -> bytes | None:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_INTERACTION_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)

"""What the anomaly worker and the leak scanner share: the Faust app, metrics, dead letters,
``/health`` and ``/metrics``, and the key service (SQL + Redis view + key-action announcements)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import orjson
import structlog
from faust.web import Request, Response, View

from core.errors import KeyStoreUnavailable
from core.redaction import redact_obj, redact_text
from worker.engine import bound_fetch_wait
from worker.keystore.redis_view import RedisView
from worker.keystore.schema import ensure_schema
from worker.keystore.service import STORE_RETRY, KeyService
from worker.keystore.store import KeyStore
from worker.metrics import Metrics
from worker.settings import Settings

log = structlog.get_logger("keywatch")

MAX_DEAD_LETTER_BYTES = 256 * 1024
REPAIR_EVERY = 60  # reconciler ticks (5 s) between full rebuilds of Redis's revoked set


def faust_app(settings: Settings, app_id: str, web_port: int, **extra: Any) -> faust.App:
    """A Faust app configured from settings (raw bytes in and out: keywatch encodes itself)."""
    options: dict[str, Any] = {
        "broker": settings.broker,
        "value_serializer": "raw",
        "key_serializer": "raw",
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "store": "memory://",
        "datadir": str(settings.data_dir / app_id),
        "web_port": web_port,
        "web_host": settings.web_host,
        "web_bind": settings.web_host,
        "consumer_auto_offset_reset": "earliest",
        "stream_wait_empty": False,
        "producer_acks": -1,
        "autodiscover": False,
        # Short group timeouts: a restarted worker rejoins in seconds, not a minute.
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": max(0.5, settings.session_timeout_s / 10),
        "broker_rebalance_timeout": settings.session_timeout_s,
        "producer_request_timeout": settings.producer_timeout_s,
    }
    options.update(extra)
    bound_fetch_wait(settings.fetch_max_wait_ms)
    Path(options["datadir"]).mkdir(parents=True, exist_ok=True)
    return faust.App(app_id, **options)


class KeywatchApp:
    """A keywatch process: one Faust app plus the services its agents use."""

    def __init__(self, settings: Settings, app_id: str, web_port: int, **faust_extra: Any) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.app = faust_app(settings, app_id, web_port, **faust_extra)
        t = settings.topics
        self.dead_letter_topic = self.app.topic(t.dead_letter, internal=True, partitions=1)
        self.key_actions_topic = self.app.topic(t.key_actions, internal=True)
        self.started_at = time.time()
        self.consuming = False
        self.store = KeyStore(settings.database_url, create=False)
        self.redis = RedisView(settings.redis_url) if settings.redis_url else None
        self.keys = KeyService(self.store, self.redis, self._announce)
        self.store_ready = asyncio.Event()
        self.store_error: str | None = None  # the last key-store failure; None once it answers
        self._reconciles = 0
        self._repair_due = False
        self._install_web()
        self.app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]
        self.app.task(self._prepare_store)
        self.app.timer(5.0)(self._reconcile)

    async def dead_letter(
        self, reason: str, source: str, payload: bytes | str | dict[str, Any], detail: str = ""
    ) -> None:
        """Send unusable input to the dead-letter topic with its reason; nothing is dropped."""
        if isinstance(payload, bytes | bytearray):
            body: Any = bytes(payload[:MAX_DEAD_LETTER_BYTES]).decode("utf-8", "replace")
        else:
            body = payload
        record = {
            "reason": reason, "source": source, "detail": redact_text(detail), "at": time.time(),
            "payload": redact_obj(body),
        }  # fmt: skip
        self.metrics.dead_letters.labels(reason=reason).inc()
        await self.produce(self.dead_letter_topic, orjson.dumps(record))

    async def produce(
        self, topic: Any, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> None:
        """Send one record and return once the broker has it; raises if it does not.

        Straight to the producer, as ``topic.send`` would (same partitioner, raw bytes), but
        without Faust's FutureMessage, which a failed send leaves holding an error nobody reads
        (one "FutureMessage exception was never retrieved" log per record after a broker error).
        """
        producer = await self.app.maybe_start_producer()  # as topic.send: started if not yet
        await (await producer.send(topic.get_topic_name(), key, value, partition, None, None))

    async def _announce(self, message: dict[str, Any]) -> None:
        key = message["key_id"].encode()
        await self.produce(self.key_actions_topic, orjson.dumps(message), key)

    async def _prepare_store(self) -> None:
        """Create the schema, retrying while the database is down (detection runs meanwhile)."""

        async def unavailable(attempt: int, exc: BaseException) -> None:
            self.store_error = str(exc).splitlines()[0][:200]
            log.warning("key_store_unavailable", error=str(exc), attempt=attempt)

        await STORE_RETRY.call(lambda: asyncio.to_thread(ensure_schema, self.store.engine),
                               Exception, on_retry=unavailable)  # fmt: skip
        self.store_ready.set()
        self.store_error = None

    async def _reconcile(self) -> None:
        """Rebuild a Redis that lost its data, lift ended throttles, expire keys, push pending
        key changes to Redis and Kafka."""
        if not self.store_ready.is_set():
            return
        # The view first, on its own: a Redis restarted without its data is rebuilt at this
        # tick, not behind an announcement waiting on the broker (up to the producer timeout).
        await self._guarded(self._repair_view)
        if await self._guarded(self.keys.expire_due):
            self.store_error = None  # expire_due read the database: it answers
            await self._guarded(self.keys.drain)
        self._reconciles += 1

    async def _repair_view(self) -> None:
        if (
            self._repair_due
            or self._reconciles % REPAIR_EVERY == 0
            or (await self.keys.redis_needs_repair())
        ):
            self._repair_due = True  # until a repair completes (it sets the marker first)
            await self.keys.repair_redis()
            self._repair_due = False

    async def _guarded(self, step: Callable[[], Awaitable[Any]]) -> bool:
        """Run one reconciler step; a store that does not answer is logged and retried at the
        next tick (a database error is also reported by ``/health``)."""
        try:
            await step()
            return True
        except KeyStoreUnavailable as exc:
            if "redis" not in str(exc).lower():
                self.store_error = str(exc).splitlines()[0][:200]
            log.warning("reconcile_retry", error=str(exc))
            return False

    async def _on_assigned(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        self.consuming = True

    def active_partitions(self) -> dict[str, list[int]]:
        """The partitions this process owns (not its standbys), per topic: which keys'
        profiles live here (``worker.supervisor`` runs several processes on one host)."""
        out: dict[str, list[int]] = {}
        for tp in self.app.assignor.assigned_actives():
            out.setdefault(tp.topic, []).append(tp.partition)
        return {topic: sorted(ps) for topic, ps in sorted(out.items())}

    def _install_web(self) -> None:
        kw = self

        @self.app.page("/health")
        class Health(View):
            async def get(self, request: Request) -> Response:
                # 200 only when nothing is down; the body names what is (for operators and
                # orchestrators), e.g. {"status": "degraded", "down": {"key_store": "..."}}
                down: dict[str, str] = {}
                if not kw.consuming:
                    down["broker"] = "not consuming yet (no partitions assigned)"
                if kw.store_error or not kw.store_ready.is_set():
                    down["key_store"] = kw.store_error or "schema not ready yet"
                status = "ok" if not down else ("starting" if not kw.consuming else "degraded")
                body = {"status": status, "consuming": kw.consuming, "down": down,
                        "key_store": kw.store_ready.is_set() and not kw.store_error,
                        "uptime_s": round(time.time() - kw.started_at, 1),
                        "pid": os.getpid(), "partitions": kw.active_partitions()}  # fmt: skip
                return self.json(body, status=200 if not down else 503)

        @self.app.page("/metrics")
        class Prom(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(kw.metrics.render(), content_type="text/plain; version=0.0.4")

"""Key actions as a service: SQL change first, then the Redis view and the announcement.

``KeyService`` is what the CLI, the response agent and the scanner call. The SQL change commits
with an outbox entry; ``drain`` then applies pending entries to Redis and announces them on
``keywatch.key-actions``. If Redis or the broker is down the entry stays pending and the
worker's reconciler timer (``worker.base``) applies it when they return, in order:
at-least-once, and every step is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.errors import KeyStoreUnavailable
from core.retry import RetryPolicy
from worker.keystore.models import OutboxEntry
from worker.keystore.redis_view import RedisView
from worker.keystore.store import Change, KeyStore
from worker.messages import key_action_from_dict, to_dict

if TYPE_CHECKING:
    from worker.settings import Settings

log = structlog.get_logger("keywatch.keystore")

Announce = Callable[[dict[str, Any]], Awaitable[None]]
# Waiting for the database: no attempt limit, the caller's offset does not pass the message.
STORE_RETRY = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0)
CLAIM_S = 30.0  # an announcing process that dies holds its claim this long at most


class _Claimed(Exception):
    """Another process holds the entry's announcement claim: not ours to announce."""


def announcement(payload: dict[str, Any]) -> dict[str, Any]:
    """The ``keywatch.key-actions`` message for an outbox payload (``KeyAction``'s fields only:
    the Redis view the payload also carries stays out)."""
    return to_dict(key_action_from_dict(payload))


class KafkaAnnouncer:
    """Publishes key actions with a plain aiokafka producer (CLI, scanner, tests)."""

    def __init__(self, bootstrap: list[str], topic: str, timeout_s: float = 5.0) -> None:
        self.topic = topic
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000), acks="all"
        )
        self._timeout = timeout_s
        self._started = False

    async def __call__(self, message: dict[str, Any]) -> None:
        try:
            if not self._started:
                await asyncio.wait_for(self._producer.start(), self._timeout)
                self._started = True
            await asyncio.wait_for(
                self._producer.send_and_wait(
                    self.topic, orjson.dumps(message), key=message["key_id"].encode()
                ),
                self._timeout,
            )
        except (KafkaError, TimeoutError, OSError) as exc:
            raise KeyStoreUnavailable(f"broker unavailable: {exc!r}") from exc

    async def close(self) -> None:
        """Stop the producer (safe when it never started)."""
        with contextlib.suppress(KafkaError, TimeoutError, OSError):
            await self._producer.stop()


class KeyService:
    """Revoke, throttle, unthrottle, rotate, expire: SQL, then Redis and Kafka via the outbox."""

    def __init__(
        self, store: KeyStore, redis: RedisView | None = None, announce: Announce | None = None
    ) -> None:
        self.store = store
        self.redis = redis
        self.announce = announce
        self._drain_lock = asyncio.Lock()

    async def revoke(
        self, key_id: str, reason: str, *, actor: str = "keywatch", alert_id: str | None = None
    ) -> Change:
        """Revoke now (idempotent) and push the change out."""
        change = await asyncio.to_thread(
            self.store.revoke, key_id, reason, actor=actor, alert_id=alert_id
        )
        await self.drain_quietly()
        return change

    async def throttle(
        self,
        key_id: str,
        ttl_s: float,
        reason: str,
        *,
        actor: str = "keywatch",
        alert_id: str | None = None,
    ) -> Change:
        """Throttle for ``ttl_s`` seconds (idempotent per alert) and push the change out."""
        change = await asyncio.to_thread(
            self.store.throttle, key_id, ttl_s, reason, actor=actor, alert_id=alert_id
        )
        await self.drain_quietly()
        return change

    async def unthrottle(self, key_id: str, reason: str, *, actor: str = "keywatch") -> Change:
        """Lift a throttle and push the change out."""
        change = await asyncio.to_thread(self.store.unthrottle, key_id, reason, actor=actor)
        await self.drain_quietly()
        return change

    async def expire_due(self) -> list[Change]:
        """Lift ended throttles and expire deprecated keys; announce them."""
        changes = await asyncio.to_thread(self.store.expire_due)
        await self.drain_quietly()
        return changes

    async def drain(self) -> int:
        """Apply pending outbox entries in order; raises KeyStoreUnavailable if a side failed.

        Each side (Redis, Kafka) keeps its own order and stops at its first failure; the other
        side carries on, so gateways hear of a revocation on ``keywatch.key-actions`` while
        Redis is down. Without Redis the Redis side counts as done; without an announcer the
        Kafka side stays pending for a process that has one (the worker's reconciler).
        """
        async with self._drain_lock:
            done, failed = 0, dict[str, KeyStoreUnavailable]()
            for entry in await asyncio.to_thread(self.store.pending_outbox):
                redis_ok, kafka_ok = entry.redis_done, entry.kafka_done
                if not redis_ok and "redis" not in failed:
                    redis_ok = await self._side(failed, "redis", self._apply_redis, entry)
                if not kafka_ok and self.announce is not None and "kafka" not in failed:
                    kafka_ok = await self._side(failed, "kafka", self._announce, entry)
                if (redis_ok, kafka_ok) != (entry.redis_done, entry.kafka_done):
                    await asyncio.to_thread(
                        self.store.mark_outbox, entry.id, redis=redis_ok, kafka=kafka_ok
                    )
                done += redis_ok and kafka_ok
            if failed:
                raise next(iter(failed.values()))
            return done

    @staticmethod
    async def _side(
        failed: dict[str, KeyStoreUnavailable],
        name: str,
        push: Callable[[OutboxEntry], Awaitable[None]],
        entry: OutboxEntry,
    ) -> bool:
        try:
            await push(entry)
            return True
        except _Claimed:
            return False  # not a failure: the other side of this entry carries on
        except KeyStoreUnavailable as exc:
            failed[name] = exc
            return False

    async def _apply_redis(self, entry: OutboxEntry) -> None:
        if self.redis is not None:
            await self.redis.apply(entry.action, entry.key_hash, entry.payload)

    async def _announce(self, entry: OutboxEntry) -> None:
        if self.announce is None:
            return
        if not await asyncio.to_thread(self.store.claim_outbox, entry.id, CLAIM_S):
            raise _Claimed()  # another process is announcing it (or just did)
        try:
            await self.announce(announcement(entry.payload))
        except (KeyStoreUnavailable, KafkaError, TimeoutError, OSError) as exc:
            await asyncio.to_thread(self.store.release_outbox, entry.id)
            if isinstance(exc, KeyStoreUnavailable):
                raise
            # the worker announces through its Faust producer (KafkaTimeoutError and friends):
            # the entry stays pending for the reconciler instead of failing the caller
            raise KeyStoreUnavailable(f"broker unavailable: {exc!r}") from exc

    async def drain_quietly(self) -> int:
        """``drain``, logging instead of raising: the reconciler retries what is left."""
        try:
            return await self.drain()
        except KeyStoreUnavailable as exc:
            log.warning("key_view_pending", error=str(exc))
            return 0

    async def repair_redis(self) -> int:
        """Full repair of the revoked set from SQL (after Redis lost its data).

        The marker is set before the view is written, not after: when Redis loses its data
        during a repair, the marker goes with it and the next tick repairs again. Set last, it
        would survive a loss between the writes and the marker, and the empty view would wait
        for the periodic repair. A repair that raises must be retried by the caller (the marker
        may already be set)."""
        if self.redis is None:
            return 0
        await self.redis.mark_repaired()
        revoked = await asyncio.to_thread(self.store.list_keys, None, "revoked")
        return await self.redis.ensure_revoked(r.key_hash for r in revoked)

    async def redis_needs_repair(self) -> bool:
        """Whether Redis lost the view since the last repair (cheap: one EXISTS)."""
        return self.redis is not None and await self.redis.needs_repair()


@contextlib.asynccontextmanager
async def command_service(
    settings: Settings, *, redis: bool = True, announce: bool = True, create: bool = True
) -> AsyncIterator[KeyService]:
    """A KeyService for a one-shot command: the configured key store, its Redis view (when one
    is configured and ``redis``) and a key-actions announcer (when ``announce``; without one the
    changes wait in the outbox for a worker), all closed at the end."""
    store = KeyStore(settings.database_url, create=create)
    view = RedisView(settings.redis_url) if redis and settings.redis_url else None
    announcer = (
        KafkaAnnouncer(settings.broker_urls, settings.topics.key_actions, 3.0) if announce else None
    )
    try:
        yield KeyService(store, view, announcer)
    finally:
        if announcer is not None:
            await announcer.close()
        if view is not None:
            await view.close()
        store.close()

"""Following key changes so every replica enforces a revocation or throttle within a second.

Two feeds, either is enough: the Redis channel ``apikey:changes`` (published by the key
store's ``RedisView`` in the same transaction as the change; milliseconds) and the Kafka topic
``keywatch.key-actions`` (works while Redis is down). After a gap in the Redis feed (a
reconnect) the whole cache is marked stale, since a message may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from core.retry import RetryPolicy
from worker.keystore.redis_view import CHANGES_CHANNEL

log = structlog.get_logger("keywatch.gateway")
REDIS_ERRORS = (RedisError, OSError)
KAFKA_ERRORS = (KafkaError, TimeoutError, OSError)
REDIS_RETRY = RetryPolicy(base_delay_s=0.2, max_delay_s=2.0)  # until Redis answers
KAFKA_RETRY = RetryPolicy(base_delay_s=0.5, max_delay_s=5.0)  # until the broker answers

OnChange = Callable[[dict[str, Any], str], None]
OnGap = Callable[[], None]


async def follow_redis(url: str, on_change: OnChange, on_gap: OnGap) -> None:
    """Forever: subscribe to ``apikey:changes``; reconnect (and report a gap) on errors."""
    while True:  # a session that was subscribed ends normally: reconnect with a fresh backoff
        await REDIS_RETRY.call(lambda: _redis_session(url, on_change, on_gap), REDIS_ERRORS,
                               on_retry=_lost("gateway_follow_redis_lost"))  # fmt: skip
        await asyncio.sleep(REDIS_RETRY.base_delay_s)


async def _redis_session(url: str, on_change: OnChange, on_gap: OnGap) -> None:
    """Subscribe and dispatch until the connection fails: an error before the subscription
    is raised (retried with backoff), one after it ends the session."""
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_keepalive=True)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(CHANGES_CHANNEL)
        on_gap()  # anything published while we were not subscribed is unknown
        try:
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is not None:
                    _dispatch(msg.get("data"), on_change, "redis")
        except REDIS_ERRORS as exc:
            log.warning("gateway_follow_redis_lost", error=repr(exc))
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(*REDIS_ERRORS):
            await client.aclose()


async def follow_kafka(bootstrap: list[str], topic: str, on_change: OnChange) -> None:
    """Forever: read ``keywatch.key-actions`` from its end (no group: every replica reads all)."""
    while True:  # a session that was consuming ends normally: reconnect with a fresh backoff
        session = lambda: _kafka_session(bootstrap, topic, on_change)  # noqa: E731
        await KAFKA_RETRY.call(session, KAFKA_ERRORS, on_retry=_lost("gateway_follow_kafka_lost"))
        await asyncio.sleep(KAFKA_RETRY.base_delay_s)


async def _kafka_session(bootstrap: list[str], topic: str, on_change: OnChange) -> None:
    """Consume until the broker fails: an error while starting is raised (retried with
    backoff), one after it ends the session."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
        enable_auto_commit=False, fetch_max_wait_ms=100, metadata_max_age_ms=5000,
    )  # fmt: skip
    try:
        await asyncio.wait_for(consumer.start(), 10)
        try:
            async for record in consumer:
                _dispatch(record.value, on_change, "kafka")
        except KAFKA_ERRORS as exc:
            log.warning("gateway_follow_kafka_lost", error=repr(exc))
    finally:
        with contextlib.suppress(*KAFKA_ERRORS):
            await asyncio.wait_for(consumer.stop(), 5)


def _lost(event: str) -> Callable[[int, BaseException], Awaitable[None]]:
    async def log_it(attempt: int, exc: BaseException) -> None:
        log.warning(event, error=repr(exc), attempt=attempt)

    return log_it


def _dispatch(raw: Any, on_change: OnChange, via: str) -> None:
    """Decode one change notice; bad input is logged and skipped, never fatal."""
    try:
        message = orjson.loads(raw) if isinstance(raw, bytes | str) else None
    except orjson.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or not isinstance(message.get("action"), str):
        log.warning("gateway_follow_bad_message", via=via)
        return
    on_change(message, via)

"""Following key changes so every replica enforces a revocation or throttle within a second.

Two feeds, either is enough: the Redis channel ``apikey:changes`` (published by the key
store's ``RedisView`` in the same transaction as the change; milliseconds) and the Kafka topic
``keywatch.key-actions`` (works while Redis is down). After a gap in the Redis feed (a
reconnect) the whole cache is marked stale, since a message may have been missed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from worker.keystore.redis_view import CHANGES_CHANNEL

log = structlog.get_logger("keywatch.gateway")

OnChange = Callable[[dict[str, Any], str], None]
OnGap = Callable[[], None]


async def follow_redis(url: str, on_change: OnChange, on_gap: OnGap) -> None:
    """Forever: subscribe to ``apikey:changes``; reconnect (and report a gap) on errors."""
    backoff = 0.2
    while True:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_keepalive=True)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANGES_CHANNEL)
            on_gap()  # anything published while we were not subscribed is unknown
            backoff = 0.2
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is not None:
                    _dispatch(msg.get("data"), on_change, "redis")
        except (RedisError, OSError) as exc:
            log.warning("gateway_follow_redis_lost", error=repr(exc))
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 2.0)


async def follow_kafka(bootstrap: list[str], topic: str, on_change: OnChange) -> None:
    """Forever: read ``keywatch.key-actions`` from its end (no group: every replica reads all)."""
    backoff = 0.5
    while True:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
            enable_auto_commit=False, fetch_max_wait_ms=100, metadata_max_age_ms=5000,
        )  # fmt: skip
        try:
            await asyncio.wait_for(consumer.start(), 10)
            backoff = 0.5
            async for record in consumer:
                _dispatch(record.value, on_change, "kafka")
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("gateway_follow_kafka_lost", error=repr(exc))
        finally:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(consumer.stop(), 5)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, 5.0)


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

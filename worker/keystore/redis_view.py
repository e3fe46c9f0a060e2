"""The gateway-facing Redis view of the key store (seed design's validation cache).

Keys (all by the key's SHA-256, which is what a gateway computes from the presented key):
- ``apikey:{hash}``           cached metadata; deleted on revoke/rotate/expire so no gateway serves
                               a stale "active"
- ``apikey:revoked``          a set of revoked key hashes
- ``apikey:throttle:{hash}``  a per-key throttle override (JSON) that expires with its TTL
- ``apikey:view``             a marker set by each full repair: when it is missing, Redis lost
                               its data (a restart without persistence) and needs a repair now
- ``apikey:changes``          a pub/sub channel: every applied change is published there as
                               ``{"key_hash", "key_id", "action", "ttl_s"?}`` in the same
                               transaction, so gateway replicas drop cached state within
                               milliseconds (``gateway.follow``)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.errors import KeyStoreUnavailable

CACHE_KEY = "apikey:{}"
REVOKED_SET = "apikey:revoked"
THROTTLE_KEY = "apikey:throttle:{}"
VIEW_MARKER = "apikey:view"
CHANGES_CHANNEL = "apikey:changes"


class RedisView:
    """Applies key changes to Redis; Redis errors become ``KeyStoreUnavailable``."""

    def __init__(self, url: str) -> None:
        self._redis = aioredis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def apply(self, action: str, key_hash: str, payload: dict[str, Any]) -> None:
        """Apply one outbox change (revoke, throttle, unthrottle, rotate, expire)."""
        try:
            await self._apply(action, key_hash, payload)
        except (RedisError, OSError) as exc:
            raise KeyStoreUnavailable(f"redis unavailable: {exc}") from exc

    async def _apply(self, action: str, key_hash: str, payload: dict[str, Any]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        if action == "revoke":
            pipe.sadd(REVOKED_SET, key_hash)
            pipe.delete(CACHE_KEY.format(key_hash), THROTTLE_KEY.format(key_hash))
        elif action == "throttle":
            override = {
                "key_id": payload["key_id"], "reason": payload.get("reason"),
                "alert_id": payload.get("alert_id"), "since": payload.get("ts"),
            }  # fmt: skip
            ttl_ms = max(1, int(float(payload["ttl_s"]) * 1000))
            pipe.set(THROTTLE_KEY.format(key_hash), orjson.dumps(override), px=ttl_ms)
        elif action == "unthrottle":
            pipe.delete(THROTTLE_KEY.format(key_hash))
        elif action in ("rotate", "expire", "limits"):
            pipe.delete(CACHE_KEY.format(key_hash))
        notice = {"key_hash": key_hash, "key_id": payload.get("key_id"), "action": action}
        if "ttl_s" in payload:
            notice["ttl_s"] = payload["ttl_s"]
        pipe.publish(CHANGES_CHANNEL, orjson.dumps(notice))
        await pipe.execute()

    async def ensure_revoked(self, key_hashes: Iterable[str]) -> int:
        """Full repair: every revoked hash in the set and out of the cache; returns how many."""
        hashes = list(key_hashes)
        try:
            for start in range(0, len(hashes), 500):
                chunk = hashes[start : start + 500]
                pipe = self._redis.pipeline(transaction=False)
                pipe.sadd(REVOKED_SET, *chunk)
                pipe.delete(*(CACHE_KEY.format(h) for h in chunk))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise KeyStoreUnavailable(f"redis unavailable: {exc}") from exc
        return len(hashes)

    async def mark_repaired(self) -> None:
        """Record that the view was rebuilt from SQL (see ``needs_repair``)."""
        try:
            await self._redis.set(VIEW_MARKER, b"1")
        except (RedisError, OSError) as exc:
            raise KeyStoreUnavailable(f"redis unavailable: {exc}") from exc

    async def needs_repair(self) -> bool:
        """True when the repair marker is gone: Redis came back empty (or never was repaired)."""
        try:
            return not await self._redis.exists(VIEW_MARKER)
        except (RedisError, OSError) as exc:
            raise KeyStoreUnavailable(f"redis unavailable: {exc}") from exc

    async def is_revoked(self, key_hash: str) -> bool:
        """Whether a gateway would see the key as revoked."""
        try:
            return bool(await self._redis.sismember(REVOKED_SET, key_hash))
        except (RedisError, OSError) as exc:
            raise KeyStoreUnavailable(f"redis unavailable: {exc}") from exc

    async def throttle_of(self, key_hash: str) -> dict[str, Any] | None:
        """The active throttle override, if any."""
        try:
            raw = await self._redis.get(THROTTLE_KEY.format(key_hash))
        except (RedisError, OSError) as exc:
            raise KeyStoreUnavailable(f"redis unavailable: {exc}") from exc
        return orjson.loads(raw) if raw else None

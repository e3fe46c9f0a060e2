"""The one verification core behind ``keywatch gateway`` and ``KeywatchMiddleware``.

Per request: extract the credential, refuse a bad prefix/checksum before any lookup, SHA-256,
then LRU -> Redis view -> SQL, status, rate limits (one Lua round trip, which also re-checks the
revoked set and the throttle override), and an event for ``gateway.access``. Background tasks:
the publisher, the change followers (Redis pub/sub, ``keywatch.key-actions``) and the batched
``last_used`` writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError, RedisError

from core.errors import KeyStoreError
from core.keyformat import has_valid_checksum, hash_key, hashes_equal
from gateway import ratelimit
from gateway.cache import KeyCache, KeyMeta
from gateway.credentials import client_ip, extract, scrubbed_path
from gateway.decision import Decision
from gateway.follow import follow_kafka, follow_redis
from gateway.metrics import GatewayMetrics
from gateway.publisher import Publisher
from gateway.ratelimit import LocalLimiter, Verdict, Window
from gateway.settings import GatewaySettings
from worker.keystore.redis_view import CACHE_KEY, REVOKED_SET
from worker.keystore.store import KeyStore

log = structlog.get_logger("keywatch.gateway")
Headers = Iterable[tuple[bytes, bytes]]
REDIS_RETRY_S = 1.0  # after a Redis error, skip Redis this long: an outage must not add latency


class Unavailable(Exception):
    """Neither Redis nor SQL could answer for a key."""


class GatewayCore:
    """Decides requests; one per process (the service) or per app (the middleware)."""

    def __init__(self, settings: GatewaySettings, *, store: KeyStore | None = None) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.cache = KeyCache(settings.cache_size, settings.cache_ttl_s, settings.negative_ttl_s)
        base = settings.base
        self.store = store or KeyStore(base.database_url)
        self.redis: aioredis.Redis | None = None
        self._script: Any = None
        if base.redis_url:
            self.redis = aioredis.Redis.from_url(
                base.redis_url,
                socket_timeout=settings.redis_timeout_s,
                socket_connect_timeout=settings.redis_timeout_s,
            )
            self._script = self.redis.register_script(ratelimit.SCRIPT)
        self.publisher = Publisher(
            base.broker_urls if settings.publish else None,
            base.topics.access, self.metrics, buffer=settings.buffer_events,
            batch=settings.batch_events, interval_s=settings.flush_interval_s,
        )  # fmt: skip
        self.local = LocalLimiter()
        self.revoked_hashes: set[str] = set()
        self.revoked_ids: set[str] = set()
        self.throttles: dict[str, float] = {}  # key id -> epoch s the throttle ends
        self._last_used: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[KeyMeta | None]] = {}
        self._decision_counters: dict[tuple[str, int], Any] = {}
        self._redis_down_until = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background tasks (idempotent)."""
        if self.started:
            return
        self.started = True
        loop = asyncio.get_running_loop()
        self.publisher.start()
        base = self.settings.base
        if base.redis_url:
            self._tasks.append(
                loop.create_task(follow_redis(base.redis_url, self.on_change, self.on_gap))
            )
        if self.settings.follow_kafka:
            self._tasks.append(loop.create_task(
                follow_kafka(base.broker_urls, base.topics.key_actions, self.on_change)
            ))  # fmt: skip
        self._tasks.append(loop.create_task(self._touch_loop()))

    async def close(self) -> None:
        """Stop tasks, flush ``last_used`` and the event buffer, close connections."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._flush_touches()
        await self.publisher.close()
        if self.redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.redis.aclose()
        self.store.close()
        self.started = False

    # -- deciding ---------------------------------------------------------------------------

    async def decide(self, method: str, path: str, query: str, headers: Headers) -> Decision:
        """Authorize one request (never raises for bad input or a backend outage)."""
        cred = extract(headers, query)
        if cred is None:
            return Decision("missing")
        in_query = cred.in_query
        if not cred.key or not has_valid_checksum(cred.key):
            key_hash = hash_key(cred.key) if cred.key else None
            return Decision("invalid", key_hash=key_hash, key_in_query=in_query)
        key_hash = hash_key(cred.key)
        del cred  # from here on only the hash exists
        if key_hash in self.revoked_hashes:
            return Decision("revoked", key_hash=key_hash, key_status="revoked",
                            key_in_query=in_query)  # fmt: skip
        entry = self.cache.get(key_hash)
        fresh = entry is not None and entry.fresh(time.monotonic())
        looked_up = False
        if entry is not None and fresh:
            meta = entry.meta
        else:
            try:
                meta = await self._lookup(key_hash)
                looked_up = True
            except Unavailable:
                if entry is None:
                    return self._fail(key_hash, in_query)
                meta = entry.meta  # stale, but better than nothing: Redis and SQL are down
        if meta is None:
            return Decision("invalid", key_hash=key_hash, key_in_query=in_query)
        return await self._judge(meta, key_hash, method, path, in_query, looked_up)

    def _fail(self, key_hash: str, in_query: bool) -> Decision:
        if self.settings.fail_mode == "open":
            return Decision("ok", key_hash=key_hash, key_in_query=in_query, unchecked=True)
        return Decision("unavailable", key_hash=key_hash, key_in_query=in_query, retry_ms=1000)

    async def _judge(
        self, meta: KeyMeta, key_hash: str, method: str, path: str, in_query: bool, fresh: bool
    ) -> Decision:
        now = time.time()
        status = meta.status_at(now)
        if meta.key_id in self.revoked_ids:
            status = "revoked"
        d = Decision("ok", key_id=meta.key_id, account_id=meta.account_id, key_status=status,
                     key_in_query=in_query, expires_at=meta.expires_at)  # fmt: skip
        if status in ("revoked", "expired"):
            if status == "revoked":
                self._remember_revoked(key_hash, meta.key_id)
            d.auth = status
            return d
        windows = self._windows(meta, method, path)
        defaults = self._default_windows(meta)
        throttled_until = self.throttles.get(meta.key_id) or meta.throttled_until
        throttled = bool(throttled_until and throttled_until > now)
        if self._script is not None and (windows or throttled or fresh):
            verdict = await self._redis_verdict(key_hash, windows)
            if verdict is not None:
                return self._apply(d, self._and_defaults(verdict, defaults), key_hash)
        if windows or throttled:
            verdict = self._local_verdict(meta.key_id, windows + defaults, throttled,
                                          throttled_until)  # fmt: skip
            return self._apply(d, verdict, key_hash)
        if defaults:  # the common case: no network call on a cache hit
            return self._apply(d, self.local.hit(defaults, int(now * 1000)), key_hash)
        self._last_used[meta.key_id] = now
        return d

    def _default_windows(self, meta: KeyMeta) -> list[Window]:
        """``KEYWATCH_GATEWAY_DEFAULT_LIMIT`` for a key without limits of its own. Counted in
        this process, not in Redis: a safety net and the ``X-RateLimit-*`` headers on every
        200 must not cost a round trip per request (a key's own limits are exact, in Redis)."""
        if meta.rate_limits:
            return []
        return [Window(f"rl:default:{meta.key_id}:{lim.window_s}", lim)
                for lim in self.settings.default_limits]  # fmt: skip

    def _and_defaults(self, verdict: Verdict, defaults: list[Window]) -> Verdict:
        """Redis allowed the request: the default limit (in process) must allow it too; the
        headers then show whichever window has less room."""
        if verdict.state != ratelimit.ALLOWED or not defaults:
            return verdict  # refused, or throttled at the throttle rate (it replaces limits)
        local = self.local.hit(defaults, int(time.time() * 1000))
        if local.state != ratelimit.ALLOWED or verdict.limit == 0:
            return local
        return verdict if verdict.remaining <= local.remaining else local

    def _apply(self, d: Decision, v: Verdict, key_hash: str) -> Decision:
        d.limit, d.remaining, d.reset_ms, d.retry_ms = v.limit, v.remaining, v.reset_ms, v.retry_ms
        if v.throttle_ms and d.key_id:  # remember it: cache hits must keep asking Redis
            self.throttles[d.key_id] = time.time() + v.throttle_ms / 1000
        if v.state == ratelimit.REVOKED:
            d.auth, d.key_status = "revoked", "revoked"
            self._remember_revoked(key_hash, d.key_id)
        elif v.state == ratelimit.THROTTLED:
            d.auth = "throttled"
        elif v.state == ratelimit.RATE_LIMITED:
            d.auth = "rate_limited"
        elif d.key_id:
            self._last_used[d.key_id] = time.time()
        return d

    def _local_verdict(
        self, key_id: str, windows: list[Window], throttled: bool, until: float | None
    ) -> Verdict:
        """Redis is down: this replica's own counters (and the throttle it knows of)."""
        now_ms = int(time.time() * 1000)
        if throttled:
            tl = self.settings.throttle_limit
            if tl is None:
                end = int((until or 0) * 1000)
                return Verdict(ratelimit.THROTTLED, 0, 0, end, max(1, end - now_ms))
            return self.local.hit([Window(f"rl:throttle:{key_id}", tl)], now_ms, throttled=True)
        return self.local.hit(windows, now_ms)

    def _windows(self, meta: KeyMeta, method: str, path: str) -> list[Window]:
        s = self.settings
        out = [Window(f"rl:key:{meta.key_id}:{lim.window_s}", lim) for lim in meta.rate_limits]
        account = s.account_limits.get(meta.account_id, s.default_account_limits)
        out += [Window(f"rl:acct:{meta.account_id}:{lim.window_s}", lim) for lim in account]
        for ep in s.endpoints:
            if ep.matches(method, path):
                out += [Window(f"rl:ep:{meta.key_id}:{ep.name}:{lim.window_s}", lim)
                        for lim in ep.limits]  # fmt: skip
        return out

    # -- lookups ----------------------------------------------------------------------------

    def _redis_usable(self) -> bool:
        return self.redis is not None and time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: BaseException) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_S
        self.metrics.backend_errors.labels("redis").inc()
        log.warning("gateway_redis_unavailable", error=repr(exc))

    async def _redis_verdict(self, key_hash: str, windows: list[Window]) -> Verdict | None:
        if not self._redis_usable():
            return None
        keys, argv = ratelimit.script_args(key_hash, windows, self.settings.throttle_limit)
        try:
            return Verdict.of(await self._script(keys=keys, args=argv))
        except (RedisError, OSError, NoScriptError) as exc:
            self._redis_failed(exc)
            return None

    async def _lookup(self, key_hash: str) -> KeyMeta | None:
        """One lookup per hash at a time: a burst on a cold key waits for the first one."""
        pending = self._inflight.get(key_hash)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyMeta | None] = asyncio.get_running_loop().create_future()
        self._inflight[key_hash] = future
        try:
            meta = await self._lookup_now(key_hash)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(meta)
            return meta
        finally:
            del self._inflight[key_hash]

    async def _lookup_now(self, key_hash: str) -> KeyMeta | None:
        """Redis view, then SQL; caches the answer (negative ones too)."""
        meta, known = await self._from_redis(key_hash)
        if not known:
            meta = await self._from_sql(key_hash)
        self.cache.put(key_hash, meta)
        return meta

    async def _from_redis(self, key_hash: str) -> tuple[KeyMeta | None, bool]:
        if not self._redis_usable():
            return None, False
        assert self.redis is not None
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(CACHE_KEY.format(key_hash))
            pipe.sismember(REVOKED_SET, key_hash)
            raw, revoked = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            return None, False
        if revoked:
            self.revoked_hashes.add(key_hash)
        if not raw:
            return None, False
        try:
            meta = KeyMeta.of_view(orjson.loads(raw))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, KeyStoreError):
            return None, False  # a view we cannot read: ask SQL
        self.metrics.lookups.labels("redis").inc()
        return meta, True

    async def _from_sql(self, key_hash: str) -> KeyMeta | None:
        try:
            rec = await asyncio.to_thread(self.store.find_by_hash, key_hash)
        except KeyStoreError as exc:
            self.metrics.backend_errors.labels("sql").inc()
            log.warning("gateway_sql_unavailable", error=str(exc))
            raise Unavailable(str(exc)) from exc
        self.metrics.lookups.labels("sql").inc()
        if rec is None or not hashes_equal(rec.key_hash, key_hash):
            return None
        if rec.status == "revoked":
            self._remember_revoked(key_hash, rec.key_id)
        elif self._redis_usable():
            assert self.redis is not None
            view = orjson.dumps(rec.gateway_view())
            try:
                await self.redis.set(CACHE_KEY.format(key_hash), view, ex=self.settings.view_ttl_s)
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
        return KeyMeta.of_record(rec)

    def _remember_revoked(self, key_hash: str | None, key_id: str | None) -> None:
        if key_hash:
            self.revoked_hashes.add(key_hash)
        if key_id:
            self.revoked_ids.add(key_id)

    # -- key changes ------------------------------------------------------------------------

    def on_change(self, message: dict[str, Any], via: str) -> None:
        """A key changed (Redis channel or ``keywatch.key-actions``): drop cached state now."""
        key_id = message.get("key_id") if isinstance(message.get("key_id"), str) else None
        key_hash = message.get("key_hash") if isinstance(message.get("key_hash"), str) else None
        action = message["action"]
        self.cache.expire(key_hash=key_hash, key_id=key_id)
        self.metrics.invalidations.labels(via).inc()
        if action == "revoke":
            self._remember_revoked(key_hash or (self.cache.hash_of(key_id) if key_id else None),
                                   key_id)  # fmt: skip
        elif action == "throttle" and key_id:
            with contextlib.suppress(TypeError, ValueError):
                self.throttles[key_id] = time.time() + float(message.get("ttl_s") or 0)
        elif action == "unthrottle" and key_id:
            self.throttles.pop(key_id, None)

    def on_gap(self) -> None:
        """The Redis feed reconnected: every cached entry is re-checked on next use."""
        self.cache.expire_all()

    # -- events and last_used ---------------------------------------------------------------

    def event(
        self, d: Decision, *, method: str, path: str, query: str, status: int,
        peer: str | None, xff: str | None, user_agent: str = "", request_id: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """The ``native`` event for ``gateway.access`` (no key, path scrubbed)."""
        ev: dict[str, Any] = {
            "ts": int(time.time() * 1000),
            "ip": client_ip(peer, xff, self.settings.trusted),
            "method": method, "path": scrubbed_path(path, query)[:2048], "status": status,
            "user_agent": user_agent[:512], "request_id": request_id[:128],
            "gateway": self.settings.name, "auth": "unchecked" if d.unchecked else d.auth,
            "key_in_query": d.key_in_query,
        }  # fmt: skip
        if d.key_id:
            ev["key_id"] = d.key_id
            if d.account_id:
                ev["account_id"] = d.account_id
        elif d.key_hash:
            ev["key_hash"] = d.key_hash
        return ev

    def publish(self, event: dict[str, Any]) -> None:
        """Queue an event (never blocks) and count the decision."""
        label = (event["auth"], event["status"])
        counter = self._decision_counters.get(label)
        if counter is None:  # labels() takes a lock and builds a tuple: once per pair
            counter = self._decision_counters[label] = self.metrics.decisions.labels(
                label[0], str(label[1])
            )
        counter.inc()
        self.publisher.emit(event)

    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.touch_interval_s)
            await self._flush_touches()

    async def _flush_touches(self) -> None:
        """Write ``last_used`` for the keys seen since the last flush, in one transaction."""
        if not self._last_used:
            return
        from datetime import UTC, datetime

        batch, self._last_used = self._last_used, {}
        stamps = {k: datetime.fromtimestamp(v, UTC) for k, v in batch.items()}
        try:
            await asyncio.to_thread(self.store.touch, stamps)
        except KeyStoreError as exc:
            self.metrics.backend_errors.labels("sql").inc()
            log.warning("gateway_touch_failed", error=str(exc))

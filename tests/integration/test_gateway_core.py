"""The gateway's verification core on real Redis and SQLite/PostgreSQL: every lifecycle status,
rate limits exact under concurrency, throttles, outages and fail modes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import redis

from core.keyformat import checksum, generate_key, hash_key
from gateway.core import GatewayCore
from tests.support.faults import ServiceSwitch, wait_for
from tests.support.gateway import ask, core_for
from worker.keystore.redis_view import CACHE_KEY, THROTTLE_KEY, RedisView
from worker.keystore.service import KeyService
from worker.keystore.store import KeyStore, utcnow

pytestmark = pytest.mark.services
MakeCore = Callable[..., GatewayCore]


@pytest.fixture
async def make_core(database_url: str, redis_url: str) -> AsyncIterator[MakeCore]:
    cores: list[GatewayCore] = []

    def make(**kw: Any) -> GatewayCore:
        db = kw.pop("database_url", database_url)
        rurl = kw.pop("redis_url", redis_url)
        core = core_for(db, rurl, **kw)
        cores.append(core)
        return core

    yield make
    for core in cores:
        await core.close()


@pytest.fixture
def store(database_url: str) -> Any:
    s = KeyStore(database_url)
    yield s
    s.close()


@pytest.fixture
async def service(store: KeyStore, redis_url: str) -> AsyncIterator[KeyService]:
    view = RedisView(redis_url)
    yield KeyService(store, view)
    await view.close()


def lookups(core: GatewayCore) -> float:
    return sum(s.value for m in core.metrics.lookups.collect() for s in m.samples
               if s.name.endswith("_total"))  # fmt: skip


async def test_active_key_every_transport(store: KeyStore, make_core: MakeCore) -> None:
    new, rec = store.create("acme")
    core = make_core()
    for how in ("bearer", "apikey", "basic", "header", "query"):
        d = await ask(core, new.secret, how=how)
        assert (d.status, d.auth, d.key_id, d.key_status) == (200, "ok", rec.key_id, "active")
        assert d.key_in_query == (how == "query")
        assert dict(d.headers())["X-Keywatch-Key-Id"] == rec.key_id
    assert lookups(core) == 1  # the LRU answered after the first request


async def test_bad_prefix_or_checksum_refused_before_any_lookup(make_core: MakeCore) -> None:
    core = make_core()
    good = generate_key()
    body = good.secret[len(good.prefix) : -6]
    forged = good.prefix + body + ("000000" if checksum(good.prefix, body) != "000000" else "1" * 6)
    for bad in (forged, "xx_live_" + body + "AAAAAA", "hello"):
        d = await ask(core, bad)
        assert (d.status, d.code) == (401, "api_key_invalid")
        assert d.key_hash == hash_key(bad) and d.key_id is None
    assert lookups(core) == 0


async def test_unknown_key_negative_cached(store: KeyStore, make_core: MakeCore) -> None:
    core = make_core()
    unknown = generate_key().secret
    for _ in range(3):
        d = await ask(core, unknown)
        assert (d.status, d.code, d.key_hash) == (401, "api_key_invalid", hash_key(unknown))
    assert lookups(core) == 1


async def test_missing(make_core: MakeCore) -> None:
    d = await ask(make_core(), None)
    assert (d.status, d.code, d.key_hash, d.key_id) == (401, "missing_api_key", None, None)


async def test_revoked_expired_deprecated(
    store: KeyStore, service: KeyService, make_core: MakeCore
) -> None:
    revoked_key, revoked = store.create("acme")
    await service.revoke(revoked.key_id, "leaked")
    expired_key, _ = store.create("acme", expires_at=utcnow() - timedelta(seconds=1))
    old_key, old = store.create("acme")
    store.rotate(old.key_id, grace_days=2)
    core = make_core()
    d = await ask(core, revoked_key.secret)
    assert (d.status, d.code, d.key_status) == (401, "api_key_revoked", "revoked")
    assert dict(d.headers())["X-Key-Status"] == "revoked"
    d = await ask(core, expired_key.secret)
    assert (d.status, d.code, d.key_status) == (401, "api_key_expired", "expired")
    d = await ask(core, old_key.secret)
    h = dict(d.headers())
    assert (d.status, h["X-Key-Status"], h["Deprecation"]) == (200, "deprecated", "true")
    assert h["X-Key-Expires-At"].startswith(str(store.get(old.key_id).expires_at.year))


async def test_rate_limit_exact_under_concurrency(store: KeyStore, make_core: MakeCore) -> None:
    new, _ = store.create("acme", rate_limits=["25/minute"])
    # exactness is Redis's; a slow shared test machine must not push a replica into its
    # Redis-down fallback (counting on its own), which is tested elsewhere
    replicas = [make_core(redis_timeout_s=10.0), make_core(redis_timeout_s=10.0)]
    await ask(replicas[0], new.secret)  # 1 used
    results = await asyncio.gather(*(ask(replicas[i % 2], new.secret) for i in range(120)))
    allowed = [d for d in results if d.allowed]
    refused = [d for d in results if not d.allowed]
    assert len(allowed) == 24
    assert {d.code for d in refused} == {"rate_limit_exceeded"}
    h = dict(refused[0].headers())
    assert h["X-RateLimit-Limit"] == "25" and h["X-RateLimit-Remaining"] == "0"
    assert int(h["Retry-After"]) >= 1 and int(h["X-RateLimit-Reset"]) > time.time() - 1
    assert sorted(d.remaining for d in allowed) == list(range(24))


async def test_default_limit_gives_every_key_ratelimit_headers(
    store: KeyStore, make_core: MakeCore
) -> None:
    """A key without limits of its own gets the default one (1000/minute unless configured),
    counted by each replica in process (no Redis round trip on a cache hit)."""
    from worker.keystore.ratelimits import parse_limits

    plain, _ = store.create("acme")
    own, _ = store.create("acme", rate_limits=["5/second"])
    d = await ask(make_core(), plain.secret)
    h = dict(d.headers())
    assert (d.status, h["X-RateLimit-Limit"], h["X-RateLimit-Remaining"]) == (200, "1000", "999")
    assert time.time() - 1 <= int(h["X-RateLimit-Reset"]) <= time.time() + 61
    core = make_core(default_limits=parse_limits(["3/minute"]))
    answers = [await ask(core, plain.secret) for _ in range(4)]
    assert [d.status for d in answers] == [200, 200, 200, 429]
    assert [d.remaining for d in answers[:3]] == [2, 1, 0]
    assert answers[3].code == "rate_limit_exceeded" and "Retry-After" in dict(answers[3].headers())
    d = await ask(core, own.secret)  # its own limit, not the default
    assert (d.status, dict(d.headers())["X-RateLimit-Limit"]) == (200, "5")
    no_redis = make_core(redis_url=None)  # counted in process: the headers are still there
    assert dict((await ask(no_redis, plain.secret)).headers())["X-RateLimit-Limit"] == "1000"


async def test_account_and_endpoint_limits(store: KeyStore, make_core: MakeCore) -> None:
    from gateway.settings import EndpointLimit
    from worker.keystore.ratelimits import parse_limits

    a, _ = store.create("acme")
    b, _ = store.create("acme")
    core = make_core(
        account_limits={"acme": parse_limits(["5/minute"])},
        endpoints=(EndpointLimit("orders", "POST", "/v1/orders", parse_limits(["2/minute"])),),
    )
    posts = [await ask(core, a.secret, method="POST", path="/v1/orders") for _ in range(3)]
    assert [d.status for d in posts] == [200, 200, 429]
    # the account's 5/minute is shared by both keys: 2 (a) + 3 (b) allowed, then refused
    gets = [await ask(core, b.secret) for _ in range(4)]
    assert [d.status for d in gets] == [200, 200, 200, 429]


async def test_throttle_override_replaces_limit_until_ttl(
    store: KeyStore, service: KeyService, make_core: MakeCore
) -> None:
    new, rec = store.create("acme", rate_limits=["100/second"])
    core = make_core()
    await core.start()
    assert (await ask(core, new.secret)).allowed
    await service.throttle(rec.key_id, 1.5, "usage.spike")
    await wait_for(lambda: rec.key_id in core.throttles, 1.0, "throttle notice")
    d = await ask(core, new.secret)
    assert (d.status, d.code) == (429, "api_key_throttled")
    assert 1 <= int(dict(d.headers())["Retry-After"]) <= 2
    await asyncio.sleep(1.6)
    assert (await ask(core, new.secret)).allowed


async def test_throttle_with_configured_rate(
    store: KeyStore, redis_url: str, make_core: MakeCore
) -> None:
    from worker.keystore.ratelimits import parse_limit

    new, rec = store.create("acme")
    redis.Redis.from_url(redis_url).set(THROTTLE_KEY.format(rec.key_hash), b"{}", px=60_000)
    core = make_core(throttle_limit=parse_limit("2/minute"))
    results = [await ask(core, new.secret) for _ in range(4)]
    assert [d.status for d in results] == [200, 200, 429, 429]
    assert results[2].code == "api_key_throttled"


async def test_limit_change_applies_to_cached_key(
    store: KeyStore, service: KeyService, make_core: MakeCore
) -> None:
    new, rec = store.create("acme")
    core = make_core()
    await core.start()
    await asyncio.sleep(0.2)  # subscribed
    assert (await ask(core, new.secret)).limit == 1000  # the default limit
    await asyncio.to_thread(store.set_limits, rec.key_id, ["1/hour"])
    await service.drain()
    await wait_for(lambda: not core.cache.get(rec.key_hash).fresh(time.monotonic()), 1.0,
                   "cache eviction")  # fmt: skip
    assert [(await ask(core, new.secret)).status for _ in range(2)] == [200, 429]


async def test_redis_down_cache_and_sql_serve_revoked_never(
    database_url: str, redis_url: str, store: KeyStore, service: KeyService, make_core: MakeCore
) -> None:
    cached, _ = store.create("acme")
    fresh, _ = store.create("acme")
    gone, gone_rec = store.create("acme")
    limited, _ = store.create("acme", rate_limits=["2/minute"])
    await service.revoke(gone_rec.key_id, "leaked")
    with ServiceSwitch(redis_url, 6379) as switch:
        core = make_core(redis_url=switch.url, cache_ttl_s=0.2)
        assert (await ask(core, cached.secret)).allowed
        assert (await ask(core, gone.secret)).code == "api_key_revoked"
        switch.down()
        await asyncio.sleep(0.3)  # the cached entries are stale now
        assert (await ask(core, cached.secret)).allowed  # SQL answers
        assert (await ask(core, fresh.secret)).allowed
        assert (await ask(core, gone.secret)).code == "api_key_revoked"
        # rate limits still hold, counted by this replica
        assert [(await ask(core, limited.secret)).status for _ in range(3)] == [200, 200, 429]
        switch.up()


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_fail_mode_when_nothing_can_check(
    mode: str, redis_url: str, store: KeyStore, make_core: MakeCore
) -> None:
    import sqlalchemy as sa

    known, _ = store.create("acme")
    unseen, _ = store.create("acme")
    core = make_core(redis_url=None, fail_mode=mode, cache_ttl_s=0.1)
    assert (await ask(core, known.secret)).allowed
    core.store.engine.dispose()
    broken = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")
    core.store.engine, original = broken, core.store.engine
    core.store._sessions.configure(bind=broken)
    try:
        await asyncio.sleep(0.15)
        assert (await ask(core, known.secret)).allowed  # stale cache entry serves
        d = await ask(core, unseen.secret)
        if mode == "open":
            assert (d.status, d.unchecked) == (200, True)
        else:
            assert (d.status, d.code) == (503, "key_check_unavailable")
            assert "Retry-After" in dict(d.headers())
    finally:
        core.store.engine = original
        broken.dispose()


async def test_last_used_written_behind_the_request(store: KeyStore, make_core: MakeCore) -> None:
    new, rec = store.create("acme")
    core = make_core(touch_interval_s=0.2)
    await core.start()
    for _ in range(5):
        assert (await ask(core, new.secret)).allowed
    assert store.get(rec.key_id).last_used_at is None  # not written in the request path
    await wait_for(lambda: store.get(rec.key_id).last_used_at is not None, 2.0, "last_used")


async def test_view_written_for_other_gateways(
    store: KeyStore, redis_url: str, make_core: MakeCore
) -> None:
    import orjson

    new, rec = store.create("acme", rate_limits=["10/second"])
    await ask(make_core(), new.secret)
    view = orjson.loads(redis.Redis.from_url(redis_url).get(CACHE_KEY.format(rec.key_hash)))
    assert view["key_id"] == rec.key_id and view["rate_limits"] == ["10/second"]
    assert view["status"] == "active" and new.secret not in str(view)


async def test_cold_key_burst_is_looked_up_once(store: KeyStore, make_core: MakeCore) -> None:
    new, _ = store.create("acme")
    core = make_core()
    results = await asyncio.gather(*(ask(core, new.secret) for _ in range(50)))
    assert all(d.allowed for d in results)
    assert lookups(core) == 1

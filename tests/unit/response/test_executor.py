"""The executor against the real key store (SQLite, PostgreSQL) and the real Redis view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis

from core.keyformat import NewKey
from core.retry import RetryPolicy
from tests.unit.response.proxy import TcpProxy
from worker.devstack import free_port
from worker.keystore.redis_view import CACHE_KEY, REVOKED_SET, THROTTLE_KEY, RedisView
from worker.keystore.service import KeyService
from worker.keystore.store import KeyRecord, KeyStore
from worker.messages import alert_from_dict
from worker.metrics import Metrics
from worker.response.executor import Executor, action_reason

TINY = RetryPolicy(base_delay_s=0.001, max_delay_s=0.01)


@dataclass
class Recorder:
    """Collects announcements and dead letters."""

    announced: list[dict[str, Any]] = field(default_factory=list)
    dead: list[tuple[str, str, Any, str]] = field(default_factory=list)

    async def announce(self, message: dict[str, Any]) -> None:
        self.announced.append(message)

    async def dead_letter(self, reason: str, source: str, payload: Any, detail: str) -> None:
        self.dead.append((reason, source, payload, detail))


def alert(key_id: str, action: str = "revoke", alert_id: str = "01JALERT0001") -> dict[str, Any]:
    return {
        "id": alert_id, "kind": "anomaly", "key_id": key_id, "account_id": "acme",
        "ts": "2026-11-22T03:04:05.123Z", "detected_at": "2026-11-22T03:04:05.412Z",
        "severity": "critical" if action == "revoke" else "high", "action": action,
        "signals": [
            {"type": "geo.new_country", "severity": "medium", "evidence": {"country": "RU"}},
            {"type": "usage.spike", "severity": "high", "evidence": {}},
        ],
        "summary": "Key used from RU (new) at 38x its usual rate",
    }  # fmt: skip


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def issued(database_url: str, make: Factory) -> tuple[KeyStore, NewKey, KeyRecord]:
    store = make.store(database_url)
    new, record = store.create("acme", "live", contact="sec@acme.example")
    return store, new, record


async def _seed_cache(client: aioredis.Redis, record: KeyRecord) -> None:
    await client.set(CACHE_KEY.format(record.key_hash), b'{"status": "active"}')


class Factory:
    """Builds executors and closes their Redis views and engines afterwards."""

    def __init__(self) -> None:
        self.views: list[RedisView] = []
        self.stores: list[KeyStore] = []

    def store(self, url: str, create: bool = True) -> KeyStore:
        self.stores.append(KeyStore(url, create=create))
        return self.stores[-1]

    def __call__(self, store: KeyStore, redis_url: str, rec: Recorder, **kw: Any) -> Executor:
        self.views.append(RedisView(redis_url))
        self.stores.append(store)
        keys = KeyService(store, self.views[-1], rec.announce)
        return Executor(keys, throttle_ttl_s=kw.pop("ttl", 600.0), dead_letter=rec.dead_letter,
                        retry=TINY, **kw)  # fmt: skip

    async def close(self) -> None:
        for view in self.views:
            await view.close()
        for store in self.stores:
            store.close()


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    factory = Factory()
    yield factory
    await factory.close()


async def test_revoke_everywhere(
    issued: tuple[KeyStore, NewKey, KeyRecord],
    redis_url: str,
    redis_client: aioredis.Redis,
    make: Factory,
) -> None:
    store, new, record = issued
    await _seed_cache(redis_client, record)
    rec, metrics = Recorder(), Metrics()
    outcome = await make(store, redis_url, rec, metrics=metrics).execute(alert(record.key_id))
    assert outcome.status == "applied"
    row = store.get(record.key_id)
    assert row.status == "revoked" and row.revoked_alert_id == "01JALERT0001"
    assert "geo.new_country+usage.spike" in (row.revoked_reason or "")
    assert "01JALERT0001" in (row.revoked_reason or "")
    audit = [a for a in store.audit(record.key_id) if a.action == "revoke"]
    assert len(audit) == 1 and audit[0].alert_id == "01JALERT0001"
    assert await redis_client.exists(CACHE_KEY.format(record.key_hash)) == 0
    assert await redis_client.sismember(REVOKED_SET, record.key_hash)
    assert [(m["key_id"], m["action"], m["alert_id"]) for m in rec.announced] == [
        (record.key_id, "revoke", "01JALERT0001")
    ]
    assert metrics.actions.labels(action="revoke")._value.get() == 1
    assert new.secret not in repr(rec.announced) + repr(store.audit(record.key_id))


async def test_same_alert_twice_revokes_once(
    issued: tuple[KeyStore, NewKey, KeyRecord], redis_url: str, make: Factory
) -> None:
    store, _, record = issued
    rec, metrics = Recorder(), Metrics()
    ex = make(store, redis_url, rec, metrics=metrics)
    first, second = await ex.execute(alert(record.key_id)), await ex.execute(alert(record.key_id))
    other = await ex.execute(alert(record.key_id, alert_id="01JALERT0002"))
    assert (first.status, second.status, other.status) == ("applied", "unchanged", "unchanged")
    assert len([a for a in store.audit(record.key_id) if a.action == "revoke"]) == 1
    assert len(rec.announced) == 1
    assert metrics.actions.labels(action="revoke")._value.get() == 1


async def test_concurrent_duplicates_revoke_once(
    issued: tuple[KeyStore, NewKey, KeyRecord], redis_url: str, make: Factory
) -> None:
    store, _, record = issued
    rec = Recorder()
    ex = make(store, redis_url, rec)
    outcomes = await asyncio.gather(*(ex.execute(alert(record.key_id)) for _ in range(4)))
    assert sorted(o.status for o in outcomes).count("applied") == 1
    assert len([a for a in store.audit(record.key_id) if a.action == "revoke"]) == 1


async def test_throttle_with_policy_ttl_then_expiry_announced(
    issued: tuple[KeyStore, NewKey, KeyRecord],
    redis_url: str,
    redis_client: aioredis.Redis,
    make: Factory,
) -> None:
    store, _, record = issued
    rec = Recorder()
    ex = make(store, redis_url, rec, ttl=0.5)
    assert (await ex.execute(alert(record.key_id, "throttle"))).status == "applied"
    assert (await ex.execute(alert(record.key_id, "throttle"))).status == "unchanged"
    assert store.get(record.key_id).throttled_until is not None
    ttl_ms = await redis_client.pttl(THROTTLE_KEY.format(record.key_hash))
    assert 0 < ttl_ms <= 500
    assert [m["action"] for m in rec.announced] == ["throttle"]
    assert rec.announced[0]["ttl_s"] == 0.5
    await asyncio.sleep(0.6)
    lifted = await ex.keys.expire_due()
    assert [c.record.key_id for c in lifted] == [record.key_id]
    assert [m["action"] for m in rec.announced] == ["throttle", "unthrottle"]
    assert rec.announced[1]["reason"] == "ttl_expired"
    assert store.get(record.key_id).throttled_until is None
    assert [a.action for a in store.audit(record.key_id)].count("throttle") == 1


@pytest.mark.parametrize("action", ["log", "notify"])
async def test_log_and_notify_do_nothing(
    issued: tuple[KeyStore, NewKey, KeyRecord], redis_url: str, action: str, make: Factory
) -> None:
    store, _, record = issued
    rec = Recorder()
    outcome = await make(store, redis_url, rec).execute(alert(record.key_id, action))
    assert outcome.status == "skipped"
    assert store.get(record.key_id).status == "active" and rec.announced == []


async def test_unknown_key_is_dead_lettered(sqlite_url: str, redis_url: str, make: Factory) -> None:
    rec = Recorder()
    outcome = await make(make.store(sqlite_url), redis_url, rec).execute(alert("nokey123"))
    assert (outcome.status, outcome.detail) == ("dead_letter", "unknown_key")
    assert [(d[0], d[1], d[2]["key_id"]) for d in rec.dead] == [
        ("unknown_key", "response", "nokey123")
    ]


@pytest.mark.parametrize(
    "bad",
    [{"action": "explode"}, {"action": "revoke", "id": "a1"}, {"action": "throttle", "key_id": "k"},
     {"id": "a", "key_id": "k"}],
)  # fmt: skip
async def test_malformed_alerts_are_dead_lettered(
    sqlite_url: str, redis_url: str, bad: dict[str, Any], make: Factory
) -> None:
    rec = Recorder()
    outcome = await make(make.store(sqlite_url), redis_url, rec).execute(bad)
    assert outcome.status == "dead_letter"
    assert rec.dead[0][0] == "bad_alert"


def test_reason_is_redacted_and_bounded() -> None:
    a = alert("k1")
    types = ["sk_live_" + "A" * 40] + [f"t{i}" * 40 for i in range(40)]
    a["signals"] = [{"type": t, "severity": "low"} for t in types]
    reason = action_reason(alert_from_dict(a))
    assert len(reason) <= 500 and "A" * 10 not in reason


def _with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"{netloc[0]}@127.0.0.1:{port}" if len(netloc) == 2 else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=host))


def _sleep_then(n: int, proxy: TcpProxy, waits: list[float]) -> Any:
    async def failed(attempt: int, exc: BaseException) -> None:
        waits.append(attempt)
        if len(waits) == n:
            await proxy.start()

    return failed


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_database_down_retries_until_it_returns(
    database_url: str, redis_url: str, make: Factory
) -> None:
    direct = make.store(database_url)  # schema and one key, through the direct URL
    _, record = direct.create("acme")
    pg = urlsplit(database_url)
    proxy = TcpProxy(free_port(), pg.hostname or "127.0.0.1", pg.port or 5432)
    waits: list[float] = []
    rec = Recorder()
    store = make.store(_with_port(database_url, proxy.port), create=False)
    ex = make(store, redis_url, rec, on_retry=_sleep_then(3, proxy, waits))
    try:
        outcome = await ex.execute(alert(record.key_id))
    finally:
        store.close()
        await proxy.stop()
    assert outcome.status == "applied" and outcome.attempts == 4 and len(waits) == 3
    assert direct.get(record.key_id).status == "revoked"
    assert [m["action"] for m in rec.announced] == ["revoke"]


async def test_redis_down_does_not_hold_up_actions_and_the_outbox_repairs_the_view(
    sqlite_url: str, redis_url: str, redis_client: aioredis.Redis, make: Factory
) -> None:
    store = make.store(sqlite_url)
    _, record = store.create("acme")
    r = urlsplit(redis_url)
    proxy = TcpProxy(free_port(), r.hostname or "127.0.0.1", r.port or 6379)  # closed: down
    rec, waits = Recorder(), []
    ex = make(store, _with_port(redis_url, proxy.port), rec, on_retry=_sleep_then(99, proxy, waits))
    try:
        outcome = await ex.execute(alert(record.key_id))
        # committed in SQL with its outbox entry; the next alert need not wait for Redis
        assert outcome.status == "applied" and outcome.attempts == 1 and waits == []
        assert store.get(record.key_id).status == "revoked"
        assert not await redis_client.sismember(REVOKED_SET, record.key_hash)
        assert len(store.pending_outbox()) == 1
        await proxy.start()
        assert await ex.keys.drain() == 1  # what the reconciler does when Redis returns
    finally:
        await proxy.stop()
    assert await redis_client.sismember(REVOKED_SET, record.key_hash)
    assert [m["action"] for m in rec.announced] == ["revoke"]
    assert len([a for a in store.audit(record.key_id) if a.action == "revoke"]) == 1


async def test_a_test_key_is_never_revoked_whatever_the_alert_says(sqlite_url: str) -> None:
    """The alert was decided while the key store was down: its fallback context said "live"."""
    store = KeyStore(sqlite_url)
    _, rec = store.create("acme", "test")
    rec_out = Recorder()
    executor = Executor(KeyService(store, None, rec_out.announce), throttle_ttl_s=60,
                        dead_letter=rec_out.dead_letter, retry=TINY)  # fmt: skip
    outcome = await executor.execute(alert(rec.key_id, "revoke"))
    assert (outcome.status, outcome.detail) == ("skipped", "not a live key")
    assert store.get(rec.key_id).status == "active" and rec_out.announced == []
    service = KeyService(store, None, rec_out.announce)
    capped = Executor(service, throttle_ttl_s=60, dead_letter=rec_out.dead_letter,
                      retry=TINY, test_max_action="throttle")  # fmt: skip
    assert (await capped.execute(alert(rec.key_id, "revoke"))).action == "throttle"
    after = store.get(rec.key_id)
    assert after.status == "active" and after.throttled_until is not None


async def test_a_broker_error_from_the_announcement_does_not_escape(sqlite_url: str) -> None:
    """The worker announces through its Faust producer, which raises KafkaTimeoutError."""
    from aiokafka.errors import KafkaTimeoutError

    from core.errors import KeyStoreUnavailable

    async def failing(message: dict[str, Any]) -> None:
        raise KafkaTimeoutError()

    store = KeyStore(sqlite_url)
    _, rec = store.create("acme")
    service = KeyService(store, None, failing)
    executor = Executor(service, throttle_ttl_s=60, dead_letter=Recorder().dead_letter,
                        retry=TINY)  # fmt: skip
    assert (await executor.execute(alert(rec.key_id, "revoke"))).status == "applied"
    assert store.get(rec.key_id).status == "revoked"
    assert [e.kafka_done for e in store.pending_outbox()] == [False]  # the reconciler retries
    with pytest.raises(KeyStoreUnavailable):
        await service.drain()
    await service.unthrottle(rec.key_id, "x")  # and a CLI-style call returns as well


async def test_two_processes_draining_the_outbox_announce_a_throttle_once(sqlite_url: str) -> None:
    """The demo's double throttle: the worker and the scanner both drain the same outbox."""
    heard: list[dict[str, Any]] = []

    async def slow_announce(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # a broker round trip: the other process reads meanwhile
        heard.append(message)

    store = KeyStore(sqlite_url)
    _, rec = store.create("acme")
    await asyncio.to_thread(store.throttle, rec.key_id, 60, "spike", alert_id="01JTHROTTLE1")
    worker = KeyService(KeyStore(sqlite_url), None, slow_announce)
    scanner = KeyService(KeyStore(sqlite_url), None, slow_announce)
    await asyncio.gather(worker.drain(), scanner.drain(), worker.drain())
    assert [(m["action"], m["alert_id"]) for m in heard] == [("throttle", "01JTHROTTLE1")]
    assert store.pending_outbox() == []


async def test_the_actions_agent_retries_an_alert_whose_handling_raised() -> None:
    """A KafkaTimeoutError from a dead letter or announcement neither stops the agent nor skips
    the alert."""
    from aiokafka.errors import KafkaTimeoutError

    from worker.agents.respond import until_done

    calls: list[str] = []

    async def flaky(value: str) -> None:
        calls.append(value)
        if len(calls) < 3:
            raise KafkaTimeoutError()

    await until_done(flaky, "alert-1", TINY)
    assert calls == ["alert-1"] * 3


@pytest.mark.parametrize("action", ["revoke", "throttle"])
async def test_a_network_subject_is_never_acted_on(
    issued: tuple[KeyStore, NewKey, KeyRecord], redis_url: str, action: str, make: Factory
) -> None:
    """Per-network alerts (auth.enumeration) name a network, not a key: nothing to act on,
    even when a hand-made or future alert asks for an action (or names a real key)."""
    store, _, record = issued
    rec = Recorder()
    executor = make(store, redis_url, rec)
    by_network = alert("net:203.0.113.0/24", action)
    by_kind = {**alert(record.key_id, action), "kind": "auth_abuse"}
    for message in (by_network, by_kind):
        outcome = await executor.execute(message)
        assert (outcome.status, outcome.attempts) == ("skipped", 0)
    assert store.get(record.key_id).status == "active"
    assert rec.announced == [] and rec.dead == []

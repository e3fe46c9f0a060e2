"""The key store on SQLite and PostgreSQL, with the real Redis view and the real broker."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest
import redis as redis_sync
from aiokafka import AIOKafkaConsumer

from core.errors import InvalidTransition, KeyNotFound, KeyStoreError, KeyStoreUnavailable
from core.keyformat import hash_key
from worker.devstack import EmbeddedBroker
from worker.keystore.redis_view import CACHE_KEY, REVOKED_SET, THROTTLE_KEY, RedisView
from worker.keystore.service import KafkaAnnouncer, KeyService
from worker.keystore.store import KeyStore, utcnow


@pytest.fixture
def store(database_url: str):  # type: ignore[no-untyped-def]
    ks = KeyStore(database_url)
    yield ks
    ks.close()


def test_create_stores_only_the_hash(store: KeyStore, database_url: str) -> None:
    new, rec = store.create("acme", "live", scopes=["read"], contact="sec@acme.test")
    assert rec.key_hash == hash_key(new.secret) and rec.status == "active"
    assert store.find_by_hash(rec.key_hash) == rec
    assert store.get(rec.key_id).scopes == ("read",)
    dump = "\n".join(repr(row) for row in store.audit()) + repr(store.list_keys())
    assert new.secret not in dump and new.secret[8:] not in dump
    with store.engine.connect() as conn:
        import sqlalchemy as sa

        for table in ("kw_keys", "kw_key_audit", "kw_outbox"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table}")).fetchall()
            assert new.secret[8:20] not in repr(rows)


def test_revoke_is_immediate_and_idempotent(store: KeyStore) -> None:
    _, rec = store.create("acme", "live")
    first = store.revoke(rec.key_id, "compromised", alert_id="A1")
    second = store.revoke(rec.key_id, "again", alert_id="A2")
    assert first.changed and not second.changed
    assert second.record.status == "revoked" and second.record.revoked_reason == "compromised"
    actions = [a.action for a in store.audit(rec.key_id)]
    assert actions == ["issue", "revoke"]


def test_rotation_deprecates_then_expires(store: KeyStore) -> None:
    _, rec = store.create("acme", "test")
    new, successor, old = store.rotate(rec.key_id, grace_days=1)
    assert successor.rotated_from == rec.key_id and successor.status == "active"
    assert old.status == "deprecated" and old.expires_at is not None
    assert new.key_hash == successor.key_hash
    with pytest.raises(InvalidTransition, match=successor.key_id):
        store.rotate(rec.key_id)  # a second rotation would give two active successors
    assert [k.rotated_from for k in store.list_keys("acme")].count(rec.key_id) == 1
    assert store.expire_due(utcnow()) == []
    expired = store.expire_due(utcnow() + timedelta(days=2))
    assert [c.record.key_id for c in expired] == [rec.key_id]
    assert store.get(rec.key_id).status == "expired"
    with pytest.raises(InvalidTransition):
        store.rotate(rec.key_id)


def test_throttle_once_per_alert_and_expiry(store: KeyStore) -> None:
    _, rec = store.create("acme", "live")
    assert store.throttle(rec.key_id, 60, "spike", alert_id="A1").changed
    assert not store.throttle(rec.key_id, 60, "spike", alert_id="A1").changed
    assert store.throttle(rec.key_id, 60, "spike again", alert_id="A2").changed
    lifted = store.expire_due(utcnow() + timedelta(seconds=61))
    assert [c.record.throttled_until for c in lifted] == [None]
    actions = [a.action for a in store.audit(rec.key_id)]
    assert actions == ["issue", "throttle", "throttle", "unthrottle"]


def test_errors_are_clear(store: KeyStore) -> None:
    with pytest.raises(KeyNotFound):
        store.revoke("nope", "x")
    with pytest.raises(KeyStoreError, match="environment"):
        store.create("acme", "prod")
    with pytest.raises(KeyStoreUnavailable):
        KeyStore("postgresql+psycopg://postgres@127.0.0.1:1/none")


class Recorder:
    """An announce callable that records messages."""

    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []

    async def __call__(self, message: dict[str, object]) -> None:
        self.messages.append(message)


async def test_redis_view_follows_revoke_and_throttle(store: KeyStore, redis_url: str) -> None:
    _, rec = store.create("acme", "live")
    r = redis_sync.Redis.from_url(redis_url)
    r.set(CACHE_KEY.format(rec.key_hash), b'{"status": "active"}')
    view, announced = RedisView(redis_url), Recorder()
    svc = KeyService(store, view, announced)
    try:
        await svc.throttle(rec.key_id, 30, "spike", alert_id="A1")
        override = orjson.loads(r.get(THROTTLE_KEY.format(rec.key_hash)))
        assert override["key_id"] == rec.key_id
        assert 0 < r.pttl(THROTTLE_KEY.format(rec.key_hash)) <= 30_000
        await svc.revoke(rec.key_id, "compromised", alert_id="A2")
        assert r.get(CACHE_KEY.format(rec.key_hash)) is None
        assert r.sismember(REVOKED_SET, rec.key_hash)
        assert r.get(THROTTLE_KEY.format(rec.key_hash)) is None
        assert [m["action"] for m in announced.messages] == ["throttle", "revoke"]
        assert announced.messages[1]["alert_id"] == "A2"
        assert announced.messages[0]["ttl_s"] == 30
        assert store.pending_outbox() == []
    finally:
        await view.close()
        r.close()


async def test_redis_outage_is_repaired_from_the_outbox(store: KeyStore, redis_url: str) -> None:
    _, rec = store.create("acme", "live")
    dead = RedisView("redis://127.0.0.1:1/0")
    svc = KeyService(store, dead, Recorder())
    change = await svc.revoke(rec.key_id, "compromised")
    assert change.changed and store.get(rec.key_id).status == "revoked"
    assert len(store.pending_outbox()) == 1
    await dead.close()
    live = RedisView(redis_url)
    try:
        healed = KeyService(store, live, Recorder())
        assert await healed.drain() == 1
        assert await live.is_revoked(rec.key_hash)
        assert store.pending_outbox() == []
    finally:
        await live.close()


async def test_redis_losing_its_data_during_a_repair_is_repaired_again(
    store: KeyStore, redis_url: str
) -> None:
    _, rec = store.create("acme", "live")
    store.revoke(rec.key_id, "leaked", actor="test")
    view = RedisView(redis_url)
    r = redis_sync.Redis.from_url(redis_url)
    svc = KeyService(store, view, Recorder())
    written = view.ensure_revoked

    async def then_restart(hashes):  # type: ignore[no-untyped-def]
        count = await written(hashes)
        r.flushdb()  # Redis restarts without its data right after the repair wrote the view
        return count

    try:
        assert await svc.redis_needs_repair()  # never repaired
        view.ensure_revoked = then_restart  # type: ignore[method-assign]
        await svc.repair_redis()
        # the loss took the marker too, so the next reconciler tick repairs again
        assert await svc.redis_needs_repair()
        view.ensure_revoked = written  # type: ignore[method-assign]
        assert await svc.repair_redis() == 1
        assert not await svc.redis_needs_repair() and await view.is_revoked(rec.key_hash)
    finally:
        await view.close()
        r.close()


async def test_key_actions_are_announced_on_the_broker(
    store: KeyStore, broker: EmbeddedBroker, topic_suffix: str
) -> None:
    topic = f"keywatch.key-actions.{topic_suffix}"
    _, rec = store.create("acme", "live")
    announcer = KafkaAnnouncer([broker.bootstrap], topic)
    try:
        await KeyService(store, None, announcer).revoke(rec.key_id, "leaked", alert_id="A9")
    finally:
        await announcer.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), 20)
    finally:
        await consumer.stop()
    body = orjson.loads(msg.value)
    assert msg.key == rec.key_id.encode()
    assert {k: body[k] for k in ("key_id", "action", "reason", "alert_id")} == {
        "key_id": rec.key_id,
        "action": "revoke",
        "reason": "leaked",
        "alert_id": "A9",
    }
    assert "ts" in body and "view" not in body

"""Redis down during revocations, with a real `keywatch worker`: SQL revokes at once, the Redis
view is repaired by the outbox reconciler when Redis returns, and no other revocation waits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.events import anomaly_alert
from tests.support.faults import ServiceSwitch, wait_for
from tests.support.kafka import collect, publish, topics_env
from tests.support.procs import keywatch_env, running
from worker.devstack import EmbeddedBroker
from worker.keystore.redis_view import CACHE_KEY, REVOKED_SET
from worker.keystore.store import KeyStore

pytestmark = [pytest.mark.services, pytest.mark.slow]


async def test_redis_down_during_revocation_is_repaired_when_it_returns(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(sqlite_url)
    keys = [store.create("acme", "live")[1] for _ in range(2)]
    r = redis.Redis.from_url(redis_url)
    for rec in keys:  # what a gateway cached while the keys were good
        r.set(CACHE_KEY.format(rec.key_hash), b'{"status": "active"}')
    topics = topics_env(topic_suffix)
    with ServiceSwitch(redis_url, 6379) as redis_switch:
        env = keywatch_env(broker.url, sqlite_url, tmp_path, redis_switch.url, **topics)
        with running(["worker"], env, tmp_path / "worker.log") as proc:
            redis_switch.down()
            alerts = [anomaly_alert(k.key_id, f"01JDREDISDOWN{i:013d}") for i, k in enumerate(keys)]
            await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"], alerts)
            # SQL is the source of truth: both revocations land although Redis is down (the
            # second alert does not wait behind the first one's Redis update).
            await wait_for(lambda: all(store.get(k.key_id).status == "revoked" for k in keys), 30,
                           "both SQL revocations while Redis is down")  # fmt: skip
            assert all(r.exists(CACHE_KEY.format(k.key_hash)) for k in keys)  # still stale
            assert len(store.pending_outbox()) >= 2
            # gateways hear of both revocations on keywatch.key-actions while Redis is down
            announced = await collect(
                broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"], lambda m: len(m) >= 2, 15
            )
            redis_switch.up()
            back = time.monotonic()
            # the reconciler (every 5 s) or the action's own retry repairs the view
            await wait_for(lambda: _repaired(r, keys), 15, "Redis view repaired")
            repaired_in = time.monotonic() - back
            # once repaired it stays so: gateways never see the revoked keys as active again
            for _ in range(10):
                assert _repaired(r, keys)
                await asyncio.sleep(0.1)
            await wait_for(lambda: not store.pending_outbox(), 10, "outbox drained")
            again = await collect(broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"],
                                  lambda m: False, 2)  # fmt: skip
            output = proc.output()
    assert repaired_in < 12
    assert sorted((m["key_id"], m["action"]) for m in announced) == sorted(
        (k.key_id, "revoke") for k in keys
    )
    assert len(again) == 2  # announced once each, not again when Redis came back
    for rec in keys:
        assert [a.action for a in store.audit(rec.key_id)].count("revoke") == 1
    assert "key_view_pending" in output or "reconcile_retry" in output
    r.close()
    store.close()


def _repaired(r: redis.Redis, keys: list[Any]) -> bool:
    return all(
        not r.exists(CACHE_KEY.format(k.key_hash)) and r.sismember(REVOKED_SET, k.key_hash)
        for k in keys
    )


async def test_redis_restarted_without_its_data_is_rebuilt_at_once(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(sqlite_url)
    revoked = store.create("acme", "live")[1]
    store.revoke(revoked.key_id, "leaked", actor="test")
    r = redis.Redis.from_url(redis_url)
    topics = topics_env(topic_suffix)
    env = keywatch_env(broker.url, sqlite_url, tmp_path, redis_url, **topics)
    with running(["worker"], env, tmp_path / "worker.log"):
        await wait_for(lambda: r.sismember(REVOKED_SET, revoked.key_hash), 15, "first repair")
        r.flushdb()  # what a Redis restart without persistence leaves behind
        lost = time.monotonic()
        await wait_for(lambda: r.sismember(REVOKED_SET, revoked.key_hash), 15, "rebuilt view")
        rebuilt_in = time.monotonic() - lost
    assert rebuilt_in < 11  # the next reconciler tick (5 s), not the periodic repair (5 min)
    r.close()
    store.close()

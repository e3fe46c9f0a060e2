"""The key-store database (PostgreSQL) down under a real `keywatch worker`: actions wait and retry,
nothing is dropped, and when it returns each action happens exactly once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.events import anomaly_alert
from tests.support.faults import ServiceSwitch, wait_for
from tests.support.kafka import collect, publish, topics_env
from tests.support.procs import Proc, keywatch_env, running
from worker.devstack import EmbeddedBroker
from worker.keystore.store import KeyStore

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_database_down_actions_wait_and_happen_once(
    broker: EmbeddedBroker, topic_suffix: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(database_url)  # direct connection: the test's view of the truth
    revoked, throttled = (store.create("acme", "live")[1] for _ in range(2))
    topics = topics_env(topic_suffix)
    with ServiceSwitch(database_url, 5432) as db:
        env = keywatch_env(broker.url, db.url, tmp_path, redis_url, **topics)
        with running(["worker"], env, tmp_path / "worker.log") as proc:
            await wait_for(lambda: _health(proc).get("key_store"), 20, "key store ready")
            db.down()
            # /health says what is down, and is not 200 while it is
            await wait_for(lambda: "key_store" in _health(proc, 503).get("down", {}), 20,
                           "/health reporting the key store down")  # fmt: skip
            first = anomaly_alert(revoked.key_id, "01JDDBDOWN0000000000000001")
            again = anomaly_alert(revoked.key_id, "01JDDBDOWN0000000000000002")
            throttle = anomaly_alert(throttled.key_id, "01JDDBDOWN0000000000000003", "throttle")
            # at-least-once input: the same alert twice, a second alert for the same key (keyed
            # by key id, as the worker publishes alerts: one partition keeps their order)
            alerts = topics["KEYWATCH_TOPIC_ALERTS"]
            await publish(broker.bootstrap, alerts, [first, first, again],
                          key=revoked.key_id.encode())  # fmt: skip
            await publish(broker.bootstrap, alerts, [throttle], key=throttled.key_id.encode())
            await wait_for(lambda: proc.output().count('"action_retry"') >= 2, 30,
                           "the action retrying while the database is down")  # fmt: skip
            assert store.get(revoked.key_id).status == "active"
            db.up()
            await wait_for(lambda: store.get(throttled.key_id).throttled_until is not None, 45,
                           "both actions once the database is back")  # fmt: skip
            await wait_for(lambda: _health(proc, 200).get("down") == {}, 20, "/health 200 again")
            announced = await collect(
                broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"], lambda m: len(m) >= 2, 15
            )
            metrics = proc.metrics()
    record = store.get(revoked.key_id)
    assert record.status == "revoked" and record.revoked_alert_id == first["id"]
    assert [a.action for a in store.audit(revoked.key_id)].count("revoke") == 1
    assert [a.action for a in store.audit(throttled.key_id)].count("throttle") == 1
    assert sorted((m["key_id"], m["action"]) for m in announced) == sorted(
        [(revoked.key_id, "revoke"), (throttled.key_id, "throttle")]
    )
    assert 'keywatch_actions_total{action="revoke"} 1.0' in metrics
    assert 'keywatch_actions_total{action="throttle"} 1.0' in metrics
    store.close()


def _health(proc: Proc, status: int | None = None) -> dict[str, Any]:
    """The worker's /health body ({} while it does not answer, or answers another status)."""
    try:
        body = httpx.get(f"http://127.0.0.1:{proc.env['KEYWATCH_WEB_PORT']}/health", timeout=2)
        if status is not None and body.status_code != status:
            return {}
        return dict(body.json())
    except (httpx.HTTPError, ValueError):
        return {}

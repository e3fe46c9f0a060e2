"""End to end: an alert on keywatch.alerts, a real `keywatch worker`, the real broker and Redis.

The key ends revoked in SQL, gone from Redis, announced on keywatch.key-actions, and the alert
reaches local Slack and webhook servers (Block Kit, verified signature), with no key in them.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from standardwebhooks import Webhook

from tests.support.events import anomaly_alert
from tests.support.faults import wait_for
from tests.support.kafka import collect, publish, topics_env
from tests.support.procs import keywatch_env, running
from tests.support.receiver import FAST_DELIVERY, Receiver, serving
from worker.devstack import EmbeddedBroker
from worker.keystore.redis_view import CACHE_KEY, REVOKED_SET
from worker.keystore.store import KeyStore

SECRET = "whsec_" + base64.b64encode(b"e2e-secret-e2e-secret-e2e-secret").decode()


def _alert(key_id: str, secret: str) -> dict[str, Any]:
    return anomaly_alert(
        key_id, "01JDE2EALERT00000000000001",
        signals=[
            {"type": "geo.new_country", "severity": "medium", "evidence": {"country": "RU"}},
            {"type": "usage.spike", "severity": "high",
             "evidence": {"observed_per_hour": 1210, "baseline_per_hour": 31.5}},
        ],
        summary=f"Key {key_id} used from RU (new) at 38x its usual rate; seen {secret}",
        sent_at=time.time(),
    )  # fmt: skip


async def _announcements(bootstrap: str, topic: str, key_id: str, within: float) -> list[Any]:
    """The key-actions about ``key_id`` (as soon as there is one, or after ``within`` s)."""

    def about(actions: list[Any]) -> list[Any]:
        return [a for a in actions if a.get("key_id") == key_id]

    return about(await collect(bootstrap, topic, lambda got: bool(about(got)), within))


@pytest.mark.services
@pytest.mark.slow
async def test_alert_to_revocation_and_delivery(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(sqlite_url)
    new, record = store.create("acme", "live", contact="sec@acme.example")
    r = redis.Redis.from_url(redis_url)
    r.set(CACHE_KEY.format(record.key_hash), b'{"status": "active"}')
    policy = tmp_path / "policy.toml"
    policy.write_text(FAST_DELIVERY)
    topics = topics_env(topic_suffix)
    with serving(Receiver()) as slack, serving(Receiver()) as hook:
        env = keywatch_env(
            broker.url, sqlite_url, tmp_path, redis_url, KEYWATCH_POLICY=str(policy),
            KEYWATCH_SLACK_WEBHOOK_URL=slack.url, KEYWATCH_WEBHOOK_URL=hook.url,
            KEYWATCH_WEBHOOK_SECRET=SECRET, **topics,
        )  # fmt: skip
        with running(["worker"], env, tmp_path / "worker.log") as proc:
            alert = _alert(record.key_id, new.secret)
            # at-least-once: the same alert twice
            await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"], [alert, alert],
                          key=record.key_id.encode())  # fmt: skip
            await wait_for(lambda: store.get(record.key_id).status == "revoked", 60, "revocation")
            await wait_for(lambda: len(slack.received) >= 2 and len(hook.received) >= 2, 30,
                           "deliveries")  # fmt: skip
            announced = await _announcements(broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"],
                                             record.key_id, 30)  # fmt: skip
            metrics = proc.metrics()
            output = proc.output()
    row = store.get(record.key_id)
    assert row.revoked_alert_id == "01JDE2EALERT00000000000001"
    assert len([a for a in store.audit(record.key_id) if a.action == "revoke"]) == 1
    assert r.exists(CACHE_KEY.format(record.key_hash)) == 0
    assert r.sismember(REVOKED_SET, record.key_hash)
    assert [(m["action"], m.get("alert_id")) for m in announced] == [
        ("revoke", "01JDE2EALERT00000000000001")
    ]
    assert 'keywatch_actions_total{action="revoke"} 1.0' in metrics
    blocks = orjson.loads(slack.received[0].body)["blocks"]
    assert blocks[0]["type"] == "header" and any(b["type"] == "context" for b in blocks)
    verified = Webhook(SECRET).verify(hook.received[0].body, hook.received[0].headers)
    assert verified["data"]["key_id"] == record.key_id
    assert verified["data"]["contact"] == "sec@acme.example"
    everything = [x.body.decode() for x in slack.received + hook.received]
    everything += [orjson.dumps(announced).decode(), metrics, output]
    assert all(new.secret not in text for text in everything)
    r.close()
    store.close()


@pytest.mark.services
@pytest.mark.slow
async def test_throttle_expiry_resolves_pagerduty_and_leaks_are_delivered(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(sqlite_url)
    _, record = store.create("acme", "live")
    policy = tmp_path / "policy.toml"
    policy.write_text("throttle_ttl_s = 1\n" + FAST_DELIVERY)
    topics = topics_env(topic_suffix)
    alert = _alert(record.key_id, "-") | {"severity": "high", "action": "throttle"}
    leak = _alert(record.key_id, "-") | {
        "id": "01JDE2ELEAK000000000000001", "kind": "leak", "severity": "critical",
        "action": "notify", "repository": "octo/app", "path": "config.py", "line": 3,
        "redacted": "sk_live_4f…", "status": "active",
    }  # fmt: skip
    with serving(Receiver()) as pd, serving(Receiver()) as hook:
        env = keywatch_env(
            broker.url, sqlite_url, tmp_path, redis_url, KEYWATCH_POLICY=str(policy),
            KEYWATCH_PAGERDUTY_ROUTING_KEY="R0UTE", KEYWATCH_PAGERDUTY_URL=pd.url,
            KEYWATCH_WEBHOOK_URL=hook.url, KEYWATCH_WEBHOOK_SECRET=SECRET, **topics,
        )  # fmt: skip
        with running(["worker"], env, tmp_path / "worker.log"):
            key = record.key_id.encode()
            await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"], [alert], key=key)
            await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_LEAKS"], [leak], key=key)
            # throttled, then lifted by the reconciler (every 5 s) once the 1 s TTL is over
            await wait_for(lambda: len(pd.received) >= 3, 60, "trigger, leak trigger, resolve")
            announced = await _announcements(broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"],
                                             record.key_id, 10)  # fmt: skip
            await wait_for(lambda: len(hook.received) >= 2, 10, "webhook deliveries")
    events = [orjson.loads(x.body) for x in pd.received]
    actions = [e["event_action"] for e in events]
    assert actions.count("trigger") == 2 and actions[-1] == "resolve"
    assert len({e["dedup_key"] for e in events}) == 1  # one incident for the key, then resolved
    assert [m["action"] for m in announced][:2] == ["throttle", "unthrottle"]
    assert store.get(record.key_id).throttled_until is None
    kinds = {Webhook(SECRET).verify(x.body, x.headers)["data"]["kind"] for x in hook.received}
    assert kinds == {"anomaly", "leak"}
    store.close()

"""Slack hanging, the webhook answering 500, PagerDuty healthy, under a real `keywatch worker`:
failures are retried with backoff then dead-lettered, and neither actions nor the healthy sink
wait for the broken ones."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.events import anomaly_alert
from tests.support.faults import wait_for
from tests.support.kafka import collect, publish, topics_env
from tests.support.procs import keywatch_env, running
from tests.support.receiver import Receiver, serving
from worker.devstack import EmbeddedBroker
from worker.keystore.store import KeyStore

pytestmark = [pytest.mark.services, pytest.mark.slow]

SECRET = "whsec_" + base64.b64encode(b"faults-secret-faults-secret-1234").decode()
ATTEMPTS = 2  # each hung Slack attempt costs the client's 10 s timeout
POLICY = f"""
[routing]
slack = "low"
webhook = "low"
pagerduty = "high"

[delivery]
max_attempts = {ATTEMPTS}
base_delay_s = 0.4
max_delay_s = 2.0
max_total_s = 60.0
slack_min_interval_s = 0.0
"""
ALERTS = 8  # more than the delivery agent's concurrency: a hanging sink must not hold them


async def test_failing_and_hanging_sinks_retry_then_dead_letter_without_stalling(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(sqlite_url)
    keys = [store.create("acme", "live")[1] for _ in range(ALERTS)]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    topics = topics_env(topic_suffix)
    alerts = [anomaly_alert(k.key_id, f"01JDSINKS{i:017d}", "notify") for i, k in enumerate(keys)]
    alerts[0]["action"], alerts[1]["action"] = "revoke", "throttle"
    slack, hook, pd = Receiver(delay_s=60), Receiver(default=(500, {})), Receiver(default=(202, {}))
    with serving(slack), serving(hook), serving(pd):
        env = keywatch_env(
            broker.url, sqlite_url, tmp_path, redis_url, KEYWATCH_POLICY=str(policy),
            KEYWATCH_SLACK_WEBHOOK_URL=slack.url, KEYWATCH_WEBHOOK_URL=hook.url,
            KEYWATCH_WEBHOOK_SECRET=SECRET, KEYWATCH_PAGERDUTY_ROUTING_KEY="R0UTE",
            KEYWATCH_PAGERDUTY_URL=pd.url, **topics,
        )  # fmt: skip
        with running(["worker"], env, tmp_path / "worker.log"):
            sent = time.monotonic()
            await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"], alerts)
            # actions and the healthy sink carry on while Slack hangs (10 s client timeout)
            await wait_for(lambda: store.get(keys[0].key_id).status == "revoked"
                           and store.get(keys[1].key_id).throttled_until is not None, 10,
                           "actions while Slack hangs")  # fmt: skip
            await wait_for(lambda: len(pd.received) >= ALERTS, 8, "every alert at PagerDuty")
            pd_done = max(h.at for h in pd.received) - sent
            await wait_for(lambda: len(hook.received) >= ALERTS * ATTEMPTS, 20, "webhook retries")
            dead = await collect(
                broker.bootstrap, topics["KEYWATCH_TOPIC_DEAD_LETTER"],
                lambda m: _count(m, "delivery_failed:webhook") >= ALERTS
                and _count(m, "delivery_failed:slack") >= 1, 40,
            )  # fmt: skip
    assert pd_done < 8
    assert _count(dead, "delivery_failed:webhook") == ALERTS
    assert _count(dead, "delivery_failed:slack") >= 1
    assert len(slack.received) >= ATTEMPTS  # the hung request was retried, not abandoned
    for alert in alerts:  # each webhook delivery: ATTEMPTS tries, spaced by growing backoff
        times = [h.at for h in hook.received if orjson.loads(h.body)["data"]["id"] == alert["id"]]
        assert len(times) == ATTEMPTS
        assert times[1] - times[0] >= 0.2  # backoff with equal jitter: at least half of 0.4 s
    assert sorted(orjson.loads(h.body)["payload"]["custom_details"]["alert_id"]
                  for h in pd.received) == sorted(a["id"] for a in alerts)  # fmt: skip
    store.close()


def _count(messages: list[Any], reason: str) -> int:
    return sum(1 for m in messages if isinstance(m, dict) and m.get("reason") == reason)

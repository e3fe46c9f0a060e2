"""End to end on the real broker: a ``keywatch worker`` child process, access logs in, events
counted, dead letters and alerts out."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from tests.support.events import kong
from tests.support.kafka import consume, consume_records, create_topics, publish, topics_env
from tests.support.procs import Proc, keywatch_env, metric, running
from worker.devstack import EmbeddedBroker
from worker.partitioning import partition_for

pytestmark = pytest.mark.services


def test_kong_batch_counted_and_bad_message_dead_lettered(
    worker: Proc, broker: EmbeddedBroker
) -> None:
    proc, access = worker, worker.env["KEYWATCH_TOPIC_ACCESS"]
    now = time.time()
    batch = [kong(now - i, f"kid{i % 3}", "8.8.8.8") for i in range(50)]
    bad = b'{"ts": "yesterday", "ip": "8.8.8.8", "key_id": "k1"'  # truncated JSON
    asyncio.run(publish(broker.bootstrap, access, [orjson.dumps(batch), bad]))

    proc.wait_metric("keywatch_events_total", 50, format="kong")
    proc.wait_metric("keywatch_events_analyzed_total", 50)
    letters = asyncio.run(consume(broker.bootstrap, proc.env["KEYWATCH_TOPIC_DEAD_LETTER"], 1))
    assert letters[0]["reason"] == "invalid_json"
    assert letters[0]["source"] == access
    assert metric(proc.metrics(), "keywatch_dead_letters_total", reason="invalid_json") == 1

    # Each key's profile reached the changelog once, on the key's own partition.
    changelog = f"{proc.env['KEYWATCH_APP_ID']}-profiles-changelog"
    records = asyncio.run(consume_records(broker.bootstrap, changelog, 3))
    assert sorted(r.key for r in records) == [b"kid0", b"kid1", b"kid2"]
    for r in records:
        assert r.partition == partition_for(r.key.decode(), 4)


def test_profiles_survive_a_restart_and_a_new_country_burst_alerts(
    broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path, topic_suffix: str
) -> None:
    topics = topics_env(topic_suffix)
    access = topics["KEYWATCH_TOPIC_ACCESS"]
    env = keywatch_env(broker.url, sqlite_url, tmp_path, KEYWATCH_SESSION_TIMEOUT_S="3", **topics)
    asyncio.run(create_topics(broker.bootstrap, [access]))
    now = time.time()
    # Four days of ordinary use from Germany, every 15 minutes, ending an hour ago.
    learned = [kong(now - 3600 - i * 900, "k-travel", "5.9.0.1") for i in range(384, 0, -1)]
    with running(["worker"], env, tmp_path / "first.log") as first:
        asyncio.run(publish(broker.bootstrap, access, [orjson.dumps(learned)]))
        first.wait_metric("keywatch_events_analyzed_total", len(learned))
        time.sleep(1.5)  # one checkpoint: the profile is on the changelog
    # A new process of the same app recovers the profile from the changelog: the burst from a
    # new country can only alert if the learned history came back.
    burst = [kong(now - 30 + i, "k-travel", "77.88.8.8") for i in range(20)]
    for e in burst:  # another client: the owner's own SDK abroad would only be logged (travel)
        e["request"]["headers"]["user-agent"] = "python-requests/2.31"
    with running(["worker"], env, tmp_path / "second.log") as second:
        asyncio.run(publish(broker.bootstrap, access, [orjson.dumps(burst)]))
        (alert,) = asyncio.run(consume(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"], 1))
        second.wait_metric("keywatch_events_analyzed_total", len(burst))
        time.sleep(1)
        # Only the burst was analyzed here: the history came back from the changelog, not from
        # replaying the events (their offsets were committed after the checkpoint).
        assert metric(second.metrics(), "keywatch_events_analyzed_total") == len(burst)
    assert alert["kind"] == "anomaly" and alert["key_id"] == "k-travel"
    assert "geo.new_country" in {s["type"] for s in alert["signals"]}
    assert alert["severity"] in ("medium", "high", "critical")
    assert alert["action"] in ("log", "notify", "throttle", "revoke")
    assert alert["ts"].endswith("Z") and alert["summary"]

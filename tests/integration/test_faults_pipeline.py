"""Faults under the anomaly pipeline (gateway.access -> profiles -> alerts -> actions).

1. SIGKILL the worker mid-stream and start it again (same app id and data directory). Checked:
   every published event reaches a profile (the changelog's per-key ``total_events`` reach the
   published counts: at-least-once, duplicates allowed); the learned profile came back from the
   changelog (a new-country burst alerts, so the key is not back in learning); an attack
   published while the worker was down is detected after the restart; the key is revoked once
   (one audit row, one announcement).
2. The key-store database down: events are still counted and alerts still raised; the
   revocation waits for the database and then happens once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.profile import KeyProfile
from tests.support.events import kong
from tests.support.faults import ServiceSwitch, wait_for
from tests.support.kafka import (
    collect,
    committed,
    create_topics,
    publish,
    read_to_end,
    reported_end,
    topics_env,
)
from tests.support.procs import Proc, keywatch_env, metric, running
from worker.devstack import EmbeddedBroker
from worker.keystore.store import KeyStore

pytestmark = [pytest.mark.services, pytest.mark.slow]

GERMANY, RUSSIA = "5.9.0.1", "77.88.8.8"
POLICY = """
[actions]
low = "log"
medium = "revoke"
high = "revoke"
critical = "revoke"
"""
MESSAGES, PER_MESSAGE = 30, 100  # the stream the worker is killed in the middle of


async def changelog_totals(bootstrap: str, topic: str) -> dict[str, int]:
    """Each key's latest ``total_events`` on the profiles changelog."""
    records = await read_to_end(bootstrap, topic, idle_ms=300)
    return {r.key.decode(): KeyProfile.from_bytes(r.value).total_events
            for r in records if r.key and r.value}  # fmt: skip


async def analyzed(proc: Proc) -> float:
    """``keywatch_events_analyzed_total`` of a running worker (0 when it does not answer)."""
    try:
        text = await asyncio.to_thread(proc.metrics)
    except Exception:
        return 0.0
    return metric(text, "keywatch_events_analyzed_total")


async def test_sigkill_mid_stream_then_restart_loses_nothing_and_revokes_once(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(sqlite_url)
    target = store.create("acme", "live")[1]
    fillers = [store.create("acme", "live")[1].key_id for _ in range(3)]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    topics = topics_env(topic_suffix)
    access = topics["KEYWATCH_TOPIC_ACCESS"]
    await create_topics(broker.bootstrap, [access], 2)
    env = keywatch_env(broker.url, sqlite_url, tmp_path, redis_url, KEYWATCH_POLICY=str(policy),
                       **topics)  # fmt: skip
    changelog = f"{env['KEYWATCH_APP_ID']}-profiles-changelog"
    now = time.time()
    # four days of ordinary use from Germany, every 15 minutes, ending an hour ago
    history = [kong(now - 3600 - i * 900, target.key_id, GERMANY) for i in range(384, 0, -1)]
    published: dict[str, int] = {target.key_id: len(history)} | dict.fromkeys(fillers, 0)

    first = Proc(["worker"], env, tmp_path / "first.log")
    try:
        first.wait_healthy()
        await publish(broker.bootstrap, access, [history])
        await wait_for(learned(broker.bootstrap, changelog, target.key_id, len(history)), 30,
                           "history on the changelog")  # fmt: skip
        # Wait until the history's offsets are committed (acknowledged at a checkpoint once
        # analysed, then committed by Faust every 2.8 s), so that the check below, that a
        # restart does not replay everything, does not race the commit.
        events, group = topics["KEYWATCH_TOPIC_EVENTS_BY_KEY"], env["KEYWATCH_APP_ID"]
        partitions = int(env["KEYWATCH_PARTITIONS"])
        end = await reported_end(broker.bootstrap, events, partitions)

        def history_committed() -> bool:
            return asyncio.run(committed(broker.bootstrap, group, events, partitions)) >= end

        await wait_for(history_committed, 30, "the history's offsets committed")
        stream = [[kong(now - 600 + m + i / 1000, fillers[(m + i) % 3], GERMANY)
                   for i in range(PER_MESSAGE)] for m in range(MESSAGES)]  # fmt: skip
        for batch in stream:
            for e in batch:
                published[e["authenticated_entity"]["id"]] += 1
        killed = asyncio.Event()
        feeding = asyncio.create_task(_trickle(broker.bootstrap, access, stream, killed))
        deadline = time.monotonic() + 30
        while await analyzed(first) < len(history) + PER_MESSAGE * 3:
            assert time.monotonic() < deadline, "the stream never started"
            await asyncio.sleep(0.05)
        at_kill = await analyzed(first)
        first.kill()  # SIGKILL mid-stream: no shutdown, no final commit
        killed_at = time.monotonic()
        killed.set()
        await feeding
        assert at_kill < sum(published.values())  # the kill really landed mid-stream
    finally:
        with contextlib.suppress(Exception):
            first.kill()
    # an attack while the worker is down: a burst from a country the key never used
    burst = [kong(time.time() - 30 + i, target.key_id, RUSSIA) for i in range(20)]
    for e in burst:  # another client: the owner's own SDK abroad would only be logged (travel)
        e["request"]["headers"]["user-agent"] = "python-requests/2.31"
    published[target.key_id] += len(burst)
    await publish(broker.bootstrap, access, [burst])

    second = Proc(["worker"], env, tmp_path / "second.log")
    totals: dict[str, int] = {}
    try:
        second.wait_healthy()
        alerts = await collect(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"],
                               new_country_alert(target.key_id), 40)  # fmt: skip
        await wait_for(lambda: store.get(target.key_id).status == "revoked", 20, "revocation")

        def caught_up() -> bool:
            totals.update(asyncio.run(changelog_totals(broker.bootstrap, changelog)))
            return all(totals.get(k, 0) >= n for k, n in published.items())

        await wait_for(caught_up, 40, "every published event in a profile")
        recovered_in = time.monotonic() - killed_at
        announced = await collect(broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"],
                                  lambda m: False, 3)  # fmt: skip
        second_analyzed = await analyzed(second)
    except BaseException:
        print(f"changelog totals {totals}, published {published}")
        print(second.diagnose())
        raise
    finally:
        second.stop()
    assert any(_new_country(a, target.key_id) for a in alerts), alerts
    assert [a.action for a in store.audit(target.key_id)].count("revoke") == 1
    assert [m["action"] for m in announced if m["key_id"] == target.key_id] == ["revoke"]
    # the restarted worker resumed from committed offsets: it did not replay the whole stream
    assert second_analyzed < sum(published.values())
    assert recovered_in < 60
    store.close()


async def _trickle(
    bootstrap: str, topic: str, stream: list[list[dict[str, Any]]], killed: asyncio.Event
) -> None:
    """Publish the stream message by message, spread over ~1.5 s, so the kill lands inside it.

    The second half waits for the kill: on a loaded machine the worker could otherwise analyse
    the whole stream before the test has read its metrics and killed it."""
    for i, batch in enumerate(stream):
        if i == len(stream) // 2:
            await asyncio.wait_for(killed.wait(), 60)
        await publish(bootstrap, topic, [orjson.dumps(batch)])
        await asyncio.sleep(0.05)


def learned(bootstrap: str, changelog: str, key_id: str, n: int) -> Callable[[], bool]:
    """A predicate: the key's profile on the changelog has counted ``n`` events."""
    return lambda: asyncio.run(changelog_totals(bootstrap, changelog)).get(key_id, 0) >= n


def new_country_alert(key_id: str) -> Callable[[list[Any]], bool]:
    """A predicate over collected alerts: one is a new-country alert for ``key_id``."""
    return lambda alerts: any(_new_country(a, key_id) for a in alerts)


def _new_country(alert: Any, key_id: str) -> bool:
    return (
        isinstance(alert, dict)
        and alert.get("key_id") == key_id
        and "geo.new_country" in {s.get("type") for s in alert.get("signals", [])}
    )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_detection_keeps_running_while_the_database_is_down(
    broker: EmbeddedBroker, topic_suffix: str, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(database_url)
    target = store.create("acme", "live")[1]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    topics = topics_env(topic_suffix)
    access = topics["KEYWATCH_TOPIC_ACCESS"]
    await create_topics(broker.bootstrap, [access], 2)
    now = time.time()
    history = [kong(now - 3600 - i * 900, target.key_id, GERMANY) for i in range(384, 0, -1)]
    burst = [kong(now - 30 + i, target.key_id, RUSSIA) for i in range(20)]
    for e in burst:  # another client: the owner's own SDK abroad would only be logged (travel)
        e["request"]["headers"]["user-agent"] = "python-requests/2.31"
    with ServiceSwitch(database_url, 5432) as db:
        env = keywatch_env(broker.url, db.url, tmp_path, redis_url, KEYWATCH_POLICY=str(policy),
                           **topics)  # fmt: skip
        changelog = f"{env['KEYWATCH_APP_ID']}-profiles-changelog"
        with running(["worker"], env, tmp_path / "worker.log") as proc:
            await publish(broker.bootstrap, access, [history])
            await wait_for(learned(broker.bootstrap, changelog, target.key_id, len(history)), 30,
                           "history learned")  # fmt: skip
            db.down()
            await publish(broker.bootstrap, access, [burst])
            # detection does not need the database: the burst is counted and alerts
            alerts = await collect(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"],
                                   new_country_alert(target.key_id), 30)  # fmt: skip
            counted = metric(proc.metrics(), "keywatch_events_total", format="kong")
            assert store.get(target.key_id).status == "active"  # the action waits for SQL
            db.up()
            await wait_for(lambda: store.get(target.key_id).status == "revoked", 30, "revoke")
    assert any(_new_country(a, target.key_id) for a in alerts)
    assert counted >= len(history) + len(burst)
    assert [a.action for a in store.audit(target.key_id)].count("revoke") == 1
    store.close()

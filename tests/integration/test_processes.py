"""``keywatch worker`` with several processes on one host (worker.supervisor), on the real broker:
no event lost, each key's profile owned by one process, SIGTERM stops every child, a killed
child comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.events import kong
from tests.support.kafka import collect_records, create_topics, publish, topics_env
from tests.support.procs import Proc, keywatch_env, metric
from worker.devstack import EmbeddedBroker
from worker.partitioning import partition_for

pytestmark = pytest.mark.services

PARTITIONS = 4
KEYS = [f"mp-key{i}" for i in range(40)]


def health(proc: Proc) -> tuple[int, dict[str, Any]]:
    """The supervisor's /health: status code and body."""
    r = httpx.get(f"http://127.0.0.1:{proc.env['KEYWATCH_WEB_PORT']}/health", timeout=5)
    return r.status_code, r.json()


def settled(proc: Proc, topic: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until every child is healthy and the topic's partitions are split among them."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = health(proc)
        children = body["processes"]
        owned = [c.get("partitions", {}).get(topic, []) for c in children]
        if status == 200 and all(owned) and sum(len(o) for o in owned) == PARTITIONS:
            return list(children)
        time.sleep(0.3)
    raise AssertionError(f"not settled: {body}\n{proc.output()[-3000:]}")


def gone(pid: int) -> bool:
    """True once ``pid`` is no process (reaped) or only a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def proc(
    broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path, topic_suffix: str
) -> Iterator[Proc]:
    """A healthy ``keywatch worker`` of two processes (its access topic has ``PARTITIONS``)."""
    topics = topics_env(topic_suffix)
    env = keywatch_env(
        broker.url, sqlite_url, tmp_path, KEYWATCH_SESSION_TIMEOUT_S="3",
        KEYWATCH_FLUSH_INTERVAL_S="0.05", KEYWATCH_PARTITIONS=str(PARTITIONS),
        KEYWATCH_WORKER_PROCESSES="2", **topics,
    )  # fmt: skip
    asyncio.run(create_topics(broker.bootstrap, [topics["KEYWATCH_TOPIC_ACCESS"]], PARTITIONS))
    supervisor = Proc(["worker"], env, tmp_path / "worker.log")
    try:
        supervisor.wait_healthy()
        yield supervisor
    finally:
        supervisor.stop(signal.SIGTERM, timeout=30)


def test_two_processes_share_the_work_and_stop_together(proc: Proc, broker: EmbeddedBroker) -> None:
    by_key, access = proc.env["KEYWATCH_TOPIC_EVENTS_BY_KEY"], proc.env["KEYWATCH_TOPIC_ACCESS"]
    children = settled(proc, by_key)
    pids = [c["pid"] for c in children]
    assert len(set(pids)) == 2 and proc.proc.pid not in pids

    # Each partition of the re-keyed topic (so each key's profile) is owned by one process.
    owned = [set(c["partitions"][by_key]) for c in children]
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(range(PARTITIONS))

    now = time.time()
    events = [kong(now - 600 + i * 0.1, KEYS[i % len(KEYS)], "8.8.8.8") for i in range(4000)]
    values = [orjson.dumps(events[i : i + 100]) for i in range(0, len(events), 100)]
    asyncio.run(publish(broker.bootstrap, access, values))
    proc.wait_metric("keywatch_events_analyzed_total", len(events), timeout=60)
    time.sleep(1.5)  # a checkpoint: every profile is on the changelog
    text = proc.metrics()
    # summed over both processes: none lost, none analyzed twice
    assert metric(text, "keywatch_events_total", format="kong") == len(events)
    assert metric(text, "keywatch_events_analyzed_total") == len(events)
    # both processes did part of the work
    per_child = [
        metric(httpx.get(f"http://127.0.0.1:{p}/metrics", timeout=5).text,
               "keywatch_events_analyzed_total")
        for p in _child_ports(proc)
    ]  # fmt: skip
    assert sum(per_child) == len(events) and all(n > 0 for n in per_child)

    # every key's profile reached the changelog on its own partition
    changelog = f"{proc.env['KEYWATCH_APP_ID']}-profiles-changelog"
    records = asyncio.run(changelog_records(broker.bootstrap, changelog, set(KEYS)))
    assert {r.key.decode() for r in records} == set(KEYS)
    for r in records:
        assert r.partition == partition_for(r.key.decode(), PARTITIONS)

    # SIGTERM to the supervisor stops every child
    assert proc.stop(signal.SIGTERM, timeout=30) == 0
    deadline = time.monotonic() + 5
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in pids)


def test_a_killed_process_is_restarted_and_work_goes_on(proc: Proc, broker: EmbeddedBroker) -> None:
    by_key, access = proc.env["KEYWATCH_TOPIC_EVENTS_BY_KEY"], proc.env["KEYWATCH_TOPIC_ACCESS"]
    before = settled(proc, by_key)
    victim = before[0]["pid"]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = health(proc)
        pids = [c.get("pid") for c in body["processes"]]
        if status == 200 and victim not in pids and all(pids):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"killed child not replaced: {body}\n{proc.output()[-3000:]}")
    assert "worker_process_died" in proc.output()
    settled(proc, by_key)

    now = time.time()
    events = [kong(now - 60 + i * 0.01, KEYS[i % len(KEYS)], "8.8.8.8") for i in range(1000)]
    asyncio.run(publish(broker.bootstrap, access, [orjson.dumps(events)]))
    proc.wait_metric("keywatch_events_analyzed_total", len(events), timeout=60)
    assert proc.proc.poll() is None  # the supervisor itself never stopped


async def changelog_records(bootstrap: str, topic: str, keys: set[str]) -> list[Any]:
    """Changelog records until every one of ``keys`` has been seen (or 30 s have passed)."""
    return await collect_records(
        bootstrap, topic, lambda got: keys <= {r.key.decode() for r in got}, 30
    )


def _child_ports(proc: Proc) -> list[int]:
    """The children's own web ports, from their command lines' environment (/proc)."""
    ports = []
    for pid in _children(proc.proc.pid):
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        ports.append(int(env[b"KEYWATCH_WEB_PORT"]))
    return ports


def _children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == ppid:
                out.append(int(entry))
    return out

"""Shared benchmark helpers: synthetic gateway traffic, Kafka produce/consume, worker processes,
and reading figures from ``/metrics``."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.procs import Proc, metric  # noqa: E402

# Public addresses in a few countries (GeoLite2): traffic gets real geo lookups.
IPS = ("8.8.8.8", "5.9.0.1", "81.2.69.142", "91.198.174.192", "1.1.1.1", "77.88.8.8")


def kong_event(ts: float, key_id: str, ip: str, i: int) -> dict[str, Any]:
    """A Kong ``kafka-log`` entry with the fields a real one carries (headers, service, route)."""
    return {
        "started_at": int(ts * 1000),
        "client_ip": ip,
        "request": {
            "method": "GET", "uri": f"/v1/items/{i % 97}", "size": 120,
            "headers": {"user-agent": "acme-sdk/2.3", "host": "api.example.com",
                        "accept": "application/json", "x-request-id": f"r{i}"},
        },
        "response": {"status": 200, "size": 812},
        "latencies": {"request": 12, "kong": 1, "proxy": 11},
        "authenticated_entity": {"id": key_id},
        "consumer": {"id": f"c-{key_id}", "custom_id": "acme"},
        "service": {"name": "items"},
        "route": {"name": "items-get"},
    }  # fmt: skip


def traffic(n: int, keys: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """``n`` events over ``keys`` keys, each key from its home IP, ending now (event time)."""
    rnd = random.Random(seed)
    start = time.time() - n * 0.01
    homes = [IPS[k % len(IPS)] for k in range(keys)]
    for i in range(n):
        k = rnd.randrange(keys)
        yield kong_event(start + i * 0.01, f"key{k:05d}", homes[k], i)


def messages(n: int, keys: int, per_message: int) -> list[bytes]:
    """The traffic as message values: JSON arrays of ``per_message`` events (1: plain objects)."""
    events = list(traffic(n, keys))
    if per_message == 1:
        return [orjson.dumps(e) for e in events]
    return [orjson.dumps(events[i : i + per_message]) for i in range(0, n, per_message)]


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> float:
    """Send every value; returns the wall time the producer took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )  # fmt: skip
    await producer.start()
    t0 = time.perf_counter()
    try:
        for value in values:
            await producer.send(topic, value)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def ceiling(bootstrap: str, topic: str, events: int) -> float:
    """A plain aiokafka consumer reading and JSON-decoding ``events`` events: seconds taken."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
        enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
    )  # fmt: skip
    await consumer.start()
    seen, t0 = 0, 0.0
    try:
        while seen < events:
            polled = await consumer.getmany(timeout_ms=1000, max_records=5000)
            if not t0 and polled:
                t0 = time.perf_counter()
            for records in polled.values():
                for r in records:
                    doc = orjson.loads(r.value)
                    seen += len(doc) if doc.__class__ is list else 1
    finally:
        await consumer.stop()
    return time.perf_counter() - t0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` and its live descendants (/proc): the
    worker's cost, whatever else the shared machine runs meanwhile."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, seconds)
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {pid}, 0.0
    for _ in range(4):  # the supervisor and its children (and theirs)
        tree |= {p for p, (parent, _) in stats.items() if parent in tree}
    for p in tree:
        total += stats.get(p, (0, 0.0))[1]
    return total


def wait_for(proc: Proc, name: str, target: float, timeout: float) -> float:
    """Poll ``/metrics`` until ``name`` reaches ``target``; returns perf_counter at that moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):  # the web server may not be up yet
            if metric(proc.metrics(), name) >= target:
                return time.perf_counter()
        if proc.proc.poll() is not None:
            raise SystemExit(f"worker exited:\n{proc.output()[-3000:]}")
        time.sleep(0.05)
    raise SystemExit(f"{name} did not reach {target} in {timeout}s:\n{proc.output()[-3000:]}")

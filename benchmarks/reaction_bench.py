"""Reaction time: a compromising burst on the topic -> the key gone from Redis and revoked in SQL.

    /work/venv/bin/python benchmarks/reaction_bench.py [--trials 50] [--background-keys 100]

A ``keywatch worker`` (``--processes``, default one per core) runs on the embedded broker with
SQLite and Redis (``--redis``, default database 7 on port 6379; flushed).
Every key gets 4.5 days of history from one US address (10 requests/hour: learned). Then, while
background traffic for other keys keeps flowing (~2,000 events/s), each trial publishes one
message carrying a burst for one key — 80 requests from a new country over the last four
minutes (a new country and a 10x+ spike: critical, revoke) — and measures, from the moment the
broker acknowledged the message, until ``apikey:{hash}`` is gone from Redis, the hash is in
``apikey:revoked`` and the key's SQL status is ``revoked``. Prints p50, p90, p99 and max.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path

import orjson
import redis
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from common import produce, wait_for  # benchmarks/common.py: also puts the repository on sys.path

from tests.support.procs import keywatch_env, running
from worker.devstack import EmbeddedBroker
from worker.keystore.redis_view import CACHE_KEY, REVOKED_SET
from worker.keystore.store import KeyStore

REDIS_URL = "redis://127.0.0.1:6379/7"
HOME_IP, ATTACK_IP = "152.7.99.10", "93.175.16.10"  # Raleigh US, Moscow RU (GeoLite2)
HISTORY_H, PER_HOUR = 108, 10


def history(key_ids: list[str], now: float) -> list[bytes]:
    """4.5 days of 10 requests/hour per key, as 200-event JSON arrays in time order."""
    events = []
    start = now - HISTORY_H * 3600 - 600
    for step in range(HISTORY_H * PER_HOUR):
        ts = start + step * 3600 / PER_HOUR
        for key_id in key_ids:
            events.append({"ts": int(ts * 1000), "key_id": key_id, "ip": HOME_IP,
                           "method": "GET", "path": "/v1/items", "status": 200})  # fmt: skip
    return [orjson.dumps(events[i : i + 200]) for i in range(0, len(events), 200)]


def burst(key_id: str, now: float) -> bytes:
    """80 requests from a new country over the last four minutes (20/minute = 1,200/hour)."""
    return orjson.dumps([
        {"ts": int((now - 240 + i * 3) * 1000), "key_id": key_id, "ip": ATTACK_IP,
         "method": "GET", "path": "/v1/export", "status": 200}
        for i in range(80)
    ])  # fmt: skip


def background(bootstrap: str, topic: str, key_ids: list[str], stop: threading.Event) -> None:
    """Benign traffic for the background keys at ~2,000 events/s until ``stop``."""

    async def loop() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            i = 0
            while not stop.is_set():
                now = time.time()
                batch = [{"ts": int(now * 1000), "key_id": key_ids[(i + j) % len(key_ids)],
                          "ip": HOME_IP, "method": "GET", "path": "/v1/items", "status": 200}
                         for j in range(200)]  # fmt: skip
                i += 200
                await producer.send(topic, orjson.dumps(batch))
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()

    asyncio.run(loop())


def trial(bootstrap: str, topic: str, key_id: str, key_hash: str, r: redis.Redis,
          engine: sa.Engine) -> float:  # fmt: skip
    """One burst; seconds from broker acknowledgement to revoked in Redis and SQL."""
    r.set(CACHE_KEY.format(key_hash), b'{"status": "active"}')  # as a gateway cache would
    asyncio.run(produce(bootstrap, topic, [burst(key_id, time.time())]))
    t0 = time.perf_counter()
    query = sa.text("SELECT status FROM kw_keys WHERE key_id = :k")
    while time.perf_counter() - t0 < 30:
        if not r.exists(CACHE_KEY.format(key_hash)) and r.sismember(REVOKED_SET, key_hash):
            with engine.connect() as conn:
                if conn.execute(query, {"k": key_id}).scalar() == "revoked":
                    return time.perf_counter() - t0
        time.sleep(0.005)
    raise SystemExit(f"key {key_id} was not revoked within 30 s")


def main() -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--background-keys", type=int, default=100)
    ap.add_argument("--redis", default=REDIS_URL, help=f"flushed first (default {REDIS_URL})")
    ap.add_argument("--processes", type=int, default=0,
                    help="KEYWATCH_WORKER_PROCESSES (default 0: one per core)")  # fmt: skip
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis)
    r.flushdb()
    with tempfile.TemporaryDirectory() as tmpdir, EmbeddedBroker() as broker:
        tmp = Path(tmpdir)
        db_url = f"sqlite:///{tmp / 'keys.db'}"
        store = KeyStore(db_url)
        trial_keys = [store.create("bench", "live")[1] for _ in range(args.trials)]
        bg_keys = [store.create("bench-bg", "live")[1].key_id for _ in range(args.background_keys)]
        store.close()
        env = keywatch_env(broker.url, db_url, tmp, args.redis, KEYWATCH_LOG_LEVEL="WARNING",
                           KEYWATCH_WORKER_PROCESSES=str(args.processes))  # fmt: skip
        topic = env["KEYWATCH_TOPIC_ACCESS"] = "bench.access"
        with running(["worker"], env, tmp / "worker.log") as proc:
            values = history([k.key_id for k in trial_keys] + bg_keys, time.time())
            n = HISTORY_H * PER_HOUR * (len(trial_keys) + len(bg_keys))
            t = time.perf_counter()
            asyncio.run(produce(broker.bootstrap, topic, values))
            wait_for(proc, "keywatch_events_analyzed_total", n, 600)
            print(f"history: {n:,} events analyzed in {time.perf_counter() - t:.1f} s")
            stop = threading.Event()
            bg = threading.Thread(target=background, args=(broker.bootstrap, topic, bg_keys, stop))
            bg.start()
            engine = sa.create_engine(db_url)
            try:
                times = [trial(broker.bootstrap, topic, k.key_id, k.key_hash, r, engine)
                         for k in trial_keys]  # fmt: skip
            finally:
                stop.set()
                bg.join()
                engine.dispose()
    q = statistics.quantiles(times, n=100, method="inclusive")
    print(f"reaction over {len(times)} trials with background traffic: "
          f"p50 {q[49] * 1000:.0f} ms, p90 {q[89] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms (target: p99 <= 200 ms)")  # fmt: skip


if __name__ == "__main__":
    main()

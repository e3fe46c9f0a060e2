"""Profile state: bytes per key in the changelog and in memory, and recovery of 100k profiles.

    /work/venv/bin/python benchmarks/state_bench.py [--keys 100000]

Realistic profiles come from a week of simulated traffic per key (diurnal pattern, one to three
countries) run through the real ``Analyzer``; 300 of them are templates for the key population.
The changelog of a worker app is filled with one record per key, exactly as ``ChangelogTable``
writes it (key id -> ``KeyProfile.to_bytes()`` on ``partition_for(key id)``); a worker is then
started on that app id and timed until it has recovered the table and analyzed a probe event
(Faust holds streams until recovery is done), against the same start with an empty changelog.
It reports how many of the profiles came back (Faust's recovery stops at the broker's reported
end offsets, which Tansu under-reports after batched produces: the worker seals each changelog
partition first, see worker.engine.ChangelogSealer; ``--seal off`` shows what happens without)
and what the seal cost.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import secrets
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from common import IPS, kong_event, produce, wait_for

from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, KeyContext
from detectors.profile import KeyProfile
from geoip.resolver import GeoResolver
from tests.support.kafka import create_topics, reported_end
from tests.support.procs import Proc, keywatch_env, metric
from worker.devstack import EmbeddedBroker
from worker.partitioning import partition_for

PARTITIONS = 8
TEMPLATES = 300


def templates(n: int, seed: int = 3) -> list[bytes]:
    """``n`` profiles of keys used for a week, as changelog values."""
    rnd = random.Random(seed)
    end = time.time()
    out = []
    with GeoResolver() as geo:
        analyzer = Analyzer(geo)
        for t in range(n):
            ips = rnd.sample(IPS, rnd.randint(1, 3))
            events = []
            ts = end - 7 * 86400
            while ts < end:
                busy = 8 <= (int(ts) // 3600) % 24 < 20
                ts += rnd.expovariate(1 / (300 if busy else 1800))
                events.append(AccessEvent(ts, f"t{t}", rnd.choice(ips), "GET", "/v1/x", 200))
            profile, _ = analyzer.analyze(KeyContext(f"t{t}"), None, events, end)
            out.append(profile.to_bytes())
    return out


def memory_per_profile(values: list[bytes], n: int = 20_000) -> tuple[float, float]:
    """Heap bytes per profile held as a live ``KeyProfile`` and as its bytes (idle keys), with
    its table entry (key string and dict slot)."""
    out = []
    for make in (KeyProfile.from_bytes, lambda v: bytes(bytearray(v))):
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = {f"key{i:07d}": make(values[i % len(values)]) for i in range(n)}
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(kept) == n
        out.append((after - before) / n)
    return out[0], out[1]


def codec_costs(values: list[bytes]) -> tuple[float, float]:
    """Microseconds per ``from_bytes`` and per ``to_bytes``."""
    t0 = time.perf_counter()
    live = [KeyProfile.from_bytes(v) for v in values]
    t1 = time.perf_counter()
    for p in live:
        p.to_bytes()
    t2 = time.perf_counter()
    return (t1 - t0) / len(values) * 1e6, (t2 - t1) / len(values) * 1e6


async def fill_changelog(bootstrap: str, topic: str, keys: int, values: list[bytes]) -> None:
    """One changelog record per key, as ChangelogTable.flush_changelog writes them."""
    await create_topics(bootstrap, [topic], PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)  # as the worker's producer
    await producer.start()
    try:
        for i in range(keys):
            key = f"key{i:07d}"
            await producer.send(topic, values[i % len(values)], key=key.encode(),
                                partition=partition_for(key, PARTITIONS))  # fmt: skip
        await producer.flush()
    finally:
        await producer.stop()


def time_to_first_analysis(
    broker: EmbeddedBroker, tmp: Path, app_id: str, seal: str
) -> tuple[float, str, str]:
    """Seconds from process start to a probe event analyzed; the final /metrics; the log."""
    topic = f"state-access-{secrets.token_hex(3)}"
    asyncio.run(create_topics(broker.bootstrap, [topic], PARTITIONS))
    env = keywatch_env(
        broker.url, f"sqlite:///{tmp / (app_id + '.db')}", tmp, KEYWATCH_APP_ID=app_id,
        KEYWATCH_PARTITIONS=str(PARTITIONS), KEYWATCH_LOG_LEVEL="INFO",
        KEYWATCH_TOPIC_ACCESS=topic, KEYWATCH_STANDBY_REPLICAS="0", KEYWATCH_CHANGELOG_SEAL=seal,
    )  # fmt: skip
    probe = [kong_event(time.time(), "probe", IPS[0], 0)]
    asyncio.run(produce(broker.bootstrap, topic, [orjson.dumps(probe)]))
    t0 = time.perf_counter()
    proc = Proc(["worker"], env, tmp / f"{app_id}.log")
    try:
        done = wait_for(proc, "keywatch_events_analyzed_total", 1, 300)
        first = metric(proc.metrics(), "keywatch_profiles")
        time.sleep(5)
        asyncio.run(produce(broker.bootstrap, topic, [orjson.dumps(probe)]))
        wait_for(proc, "keywatch_events_analyzed_total", 2, 60)
        print(
            f"  profiles at first analysis {first:,.0f}, 5 s later "
            f"{metric(proc.metrics(), 'keywatch_profiles'):,.0f}"
        )
        return done - t0, proc.metrics(), proc.output()
    finally:
        proc.stop()


def seal_ms(log: str) -> str:
    """What the changelog seal cost, from the worker's ``changelog_sealed`` log lines."""
    found = [line for line in log.splitlines() if "changelog_sealed" in line]
    if not found:
        return "no seal (not needed, or --seal off)"
    costs = [m.group(1) for line in found if (m := re.search(r"ms\W+(\d+)", line))]
    return f"{len(found)} seal(s), {' + '.join(costs) or '?'} ms"


def main() -> None:
    """Print bytes per key and recovery time."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seal", choices=("auto", "on", "off"), default="auto",
                    help="KEYWATCH_CHANGELOG_SEAL for the workers")  # fmt: skip
    args = ap.parse_args()
    values = templates(TEMPLATES)
    sizes = sorted(len(v) for v in values)
    per_obj, per_idle = memory_per_profile(values)
    load_us, dump_us = codec_costs(values)
    p50, top = sizes[len(sizes) // 2], sizes[-1]
    print(f"changelog bytes per profile: mean {statistics.mean(sizes):.0f}, p50 {p50}, "
          f"max {top} (plus the key id and the record overhead)")  # fmt: skip
    print(f"memory per key: {per_obj:.0f} B as a live KeyProfile (active keys), {per_idle:.0f} B "
          f"as bytes (idle keys); {args.keys:,} keys: {per_obj * args.keys / 2**20:.0f} MiB "
          f"all live, {per_idle * args.keys / 2**20:.0f} MiB all idle")  # fmt: skip
    print(f"KeyProfile.from_bytes {load_us:.0f} us, to_bytes {dump_us:.0f} us")
    with tempfile.TemporaryDirectory() as d, EmbeddedBroker(log_path=Path(d) / "b.log") as b:
        tmp = Path(d)
        base, _, _ = time_to_first_analysis(
            b, tmp, f"state-empty-{secrets.token_hex(3)}", args.seal
        )
        app_id = f"state-full-{secrets.token_hex(3)}"
        t0 = time.perf_counter()
        asyncio.run(fill_changelog(b.bootstrap, f"{app_id}-profiles-changelog", args.keys, values))
        print(f"changelog of {args.keys:,} profiles written in {time.perf_counter() - t0:.1f}s")
        full, metrics, log = time_to_first_analysis(b, tmp, app_id, args.seal)
        reported = asyncio.run(
            reported_end(b.bootstrap, f"{app_id}-profiles-changelog", PARTITIONS)
        )
    recovered = metric(metrics, "keywatch_profiles") - 1  # the probe's own profile
    print(
        f"start to first analysis: empty changelog {base:.1f}s, {args.keys:,} profiles "
        f"{full:.1f}s -> recovery {full - base:.1f}s ({recovered:,.0f} profiles in the table)"
    )
    print(f"profiles recovered: {recovered:,.0f} of {args.keys:,} "
          f"(seal {args.seal}: {seal_ms(log)})")  # fmt: skip
    # Faust recovers each changelog partition up to the broker's reported end offset; Tansu
    # under-reports it after batched produce (the seal makes it right before recovery reads it).
    print(f"broker-reported changelog end offsets after the run: {reported:,} for "
          f"{args.keys:,} records")  # fmt: skip


if __name__ == "__main__":
    main()

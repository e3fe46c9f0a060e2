"""Parse throughput per format: 200-event arrays, µs per event (targets: native ≤ 3, Kong ≤ 6).

Run: ``python benchmarks/parse_bench.py [--rounds N]``. Each figure is printed beside the dict
path's (``worker.ingest.typed`` switched off: orjson into dicts, as before the typed fast path),
timed in alternating rounds of the same run, best of the rounds. Then the whole ingest stage
(parse, resolve, re-key, encode; no broker: sends are dropped) on benchmarks/worker_bench.py's
Kong traffic, CPU µs per event, both ways. Timings are noisy on a shared machine; compare within
one run.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from worker.ingest import parse_message, typed

BATCH = 200
T0 = 1_795_316_645_000  # epoch ms, 2026-11-22


def _ip(rng: random.Random) -> str:
    return f"203.0.{rng.randrange(0, 4)}.{rng.randrange(1, 40)}"


def native_event(i: int, rng: random.Random) -> dict[str, Any]:
    """A native event as a gateway would emit it."""
    ms = T0 + i * 37
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
    return {
        "ts": iso,
        "key_id": f"{rng.randrange(500):016x}",
        "ip": _ip(rng),
        "method": "GET",
        "path": f"/v1/users/{i}",
        "status": 200,
        "user_agent": "acme-sdk/2.3.1 python/3.11",
        "request_id": f"req-{i:08d}",
        "gateway": "gw-eu-1",
    }


def kong_event(i: int, rng: random.Random) -> dict[str, Any]:
    """A kong.log.serialize() entry with the usual fields."""
    return {
        "request": {
            "method": "GET",
            "uri": f"/v1/orders/{i}?page=2",
            "url": f"https://api.example.com:443/v1/orders/{i}?page=2",
            "size": 312,
            "querystring": {"page": "2"},
            "headers": {
                "host": "api.example.com",
                "accept": "application/json",
                "user-agent": "acme-sdk/2.3.1",
                "authorization": "REDACTED",
                "x-kong-request-id": f"{i:032x}",
            },
            "tls": {"version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"},
        },
        "upstream_uri": f"/v1/orders/{i}?page=2",
        "response": {"status": 200, "size": 934, "headers": {"content-type": "application/json"}},
        "latencies": {"request": 21, "kong": 2, "proxy": 19},
        "tries": [{"balancer_latency": 0, "port": 8080, "ip": "10.0.3.7"}],
        "client_ip": _ip(rng),
        "authenticated_entity": {"id": f"4fd2a1c8-0000-4000-8000-{rng.randrange(500):012x}"},
        "consumer": {"id": "b2e1c3d4-0000-4000-8000-000000000001", "username": "acme"},
        "route": {"name": "orders", "id": "r-1"},
        "service": {"name": "orders-svc", "id": "s-1"},
        "started_at": T0 + i * 37,
        "workspace": "default",
    }


def _dict_path(*_: object) -> None:
    return None  # stands in for typed.parse: every message takes the dict path


def fast_path(on: bool) -> None:
    """Switch the typed fast path on or off."""
    typed.parse = _TYPED if on else _dict_path  # type: ignore[assignment]


_TYPED = typed.parse


def bench(name: str, make: Callable[[int, random.Random], dict[str, Any]], rounds: int) -> None:
    """Best-of-rounds µs per event for one 200-event array message, typed and dict path."""
    rng = random.Random(7)
    message = orjson.dumps([make(i, rng) for i in range(BATCH)])
    fmt_check = parse_message(message)
    assert len(fmt_check.events) == BATCH, fmt_check.rejects[:3]
    best = {True: float("inf"), False: float("inf")}
    for _ in range(rounds):
        for on in (True, False):
            fast_path(on)
            start = time.process_time()
            for _ in range(20):
                parse_message(message)
            best[on] = min(best[on], (time.process_time() - start) / (20 * BATCH))
    fast_path(True)
    us, before = best[True] * 1e6, best[False] * 1e6
    print(f"{name:8s} {us:6.2f} µs/event  ({1e6 / us:,.0f} events/s, {len(message)} bytes/msg); "
          f"dict path {before:.2f} µs/event: {before / us:.2f}x")  # fmt: skip


def ingest_stage(rounds: int, n: int = 40_000, once: int | None = None) -> None:
    """The ingest stage on worker_bench's traffic (200 Kong events per message), CPU µs/event.

    ``once``: run the stage once over that many events (the fast path as ``fast_path`` left it)
    and print nothing: a fixed input for instruction counts (see ``main``)."""
    import asyncio
    import tempfile

    from common import messages  # benchmarks/common.py

    from worker.agents.ingest import IngestStage
    from worker.commands.run import tune_gc
    from worker.keycache import KeyCache
    from worker.keystore.store import KeyStore
    from worker.metrics import Metrics
    from worker.settings import Settings

    async def drop(*_: object) -> None:
        return None

    values = messages(n, 2000, 200)
    with tempfile.TemporaryDirectory() as d:
        store = KeyStore(f"sqlite:///{d}/keys.db")
        cache = KeyCache(store.find_many_by_hash, store.find_many)
        stage = IngestStage(Settings(partitions=8), Metrics(), cache, drop, drop)

        async def run(upto: int = n) -> None:
            for i in range(0, upto // BATCH, 500):  # polls of 500 messages
                await stage.handle(values[i : min(i + 500, upto // BATCH)])

        asyncio.run(stage.handle(values[:1]))  # warm: imports, caches, code paths
        tune_gc()  # as the worker does at start
        if once is not None:
            asyncio.run(run(once))
            return

        best = {True: float("inf"), False: float("inf")}
        for _ in range(max(3, rounds // 5)):
            for on in (True, False):
                fast_path(on)
                start = time.process_time()
                asyncio.run(run())
                best[on] = min(best[on], (time.process_time() - start) / n)
        fast_path(True)
    us, before = best[True] * 1e6, best[False] * 1e6
    print(f"ingest stage, worker_bench's Kong traffic: {us:.2f} µs/event of CPU; "
          f"dict path {before:.2f}: {before / us:.2f}x")  # fmt: skip


def main() -> None:
    """Print µs/event for native and Kong arrays, and for the ingest stage."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--once", type=int, default=None, metavar="N",
                        help="only run the ingest stage once over N events, untimed, for "
                        "instruction counts: `valgrind --tool=callgrind python ... --once 20000`"
                        " minus the same with --once 0")  # fmt: skip
    parser.add_argument("--dict-path", action="store_true", help="with --once: no fast path")
    args = parser.parse_args()
    if args.once is not None:
        fast_path(not args.dict_path)
        ingest_stage(0, once=min(args.once, 40_000))  # the same 40k-event traffic either way
        return
    bench("native", native_event, args.rounds)
    bench("kong", kong_event, args.rounds)
    ingest_stage(args.rounds)


if __name__ == "__main__":
    main()

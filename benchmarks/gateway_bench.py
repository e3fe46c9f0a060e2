"""The gateway half: middleware overhead, throughput, decision latency, propagation, exactness.

    /work/venv/bin/python benchmarks/gateway_bench.py [--redis-url URL] [--quick]

1. ``KeywatchMiddleware`` overhead per request on a cache hit, in-process (the ASGI app called
   directly, no HTTP): wrapped minus bare, median and p99 (targets: 50 us, 200 us), for a key
   without limits (no network at all) and with a rate limit (one Redis round trip).
2. Requests/s of the sample Starlette app under uvicorn, with and without the middleware, side
   by side (same client, same concurrency).
3. ``keywatch gateway`` decisions/s and latency percentiles under concurrency.
4. Revocation-to-enforcement delay across two ``keywatch gateway`` replicas (target p99 1 s).
5. Rate-limit exactness: N concurrent requests spread over two replicas against a limit L.

Real services: Redis (``--redis-url``), an embedded Tansu broker, SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway import devrun  # noqa: E402
from gateway.middleware import KeywatchMiddleware  # noqa: E402
from gateway.sample_api import app as sample_app  # noqa: E402
from tests.support.gateway import core_for  # noqa: E402
from worker.devstack import EmbeddedBroker, free_port  # noqa: E402
from worker.keystore.ratelimits import parse_limits  # noqa: E402
from worker.keystore.redis_view import RedisView  # noqa: E402
from worker.keystore.service import KafkaAnnouncer, KeyService  # noqa: E402
from worker.keystore.store import KeyStore  # noqa: E402


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def call(app: Any, scope: dict[str, Any]) -> None:
    """One in-process ASGI request."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return None

    await app(scope, receive, send)


def scope_for(key: str) -> dict[str, Any]:
    """An ASGI scope for GET /v1/users with the key as a Bearer token."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/v1/users", "raw_path": b"/v1/users", "query_string": b"",
        "root_path": "", "client": ("203.0.113.7", 5000), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"api"), (b"authorization", f"Bearer {key}".encode()),
                    (b"user-agent", b"bench/1.0")],
    }  # fmt: skip


async def overhead(db: str, redis_url: str, n: int) -> None:
    """Section 1: in-process middleware overhead on a cache hit."""
    # Keys without limits of their own get KEYWATCH_GATEWAY_DEFAULT_LIMIT (one Redis round trip
    # per request, for the X-RateLimit-* headers); set high enough that the run stays under it.
    default = parse_limits([f"{n * 10}/hour"])
    core = core_for(db, redis_url, buffer_events=n * 4, default_limits=default)
    free, _ = core.store.create("bench")
    limited, _ = core.store.create("bench", rate_limits=[f"{n * 10}/hour"])
    bare = sample_app()
    wrapped = KeywatchMiddleware(bare, core=core)
    await core.start()
    print("1. middleware overhead per request, cache hit, in-process (ASGI call, no HTTP)")
    cases = (("key, default limit", free.secret), ("key with a rate limit", limited.secret))
    for label, key in cases:
        scope = scope_for(key)
        await call(wrapped, dict(scope))  # warm the cache
        t_bare: list[float] = []
        t_wrapped: list[float] = []
        for i in range(n):  # interleaved, so drift hits both alike
            for app, out in ((bare, t_bare), (wrapped, t_wrapped)):
                t0 = time.perf_counter_ns()
                await call(app, dict(scope))
                out.append((time.perf_counter_ns() - t0) / 1000)
            if i % 5000 == 0:
                core.publisher._buf.clear()
        med = statistics.median(t_wrapped) - statistics.median(t_bare)
        p99 = pct(t_wrapped, 0.99) - pct(t_bare, 0.99)
        print(f"   {label:<22} bare app median {statistics.median(t_bare):6.1f} us, "
              f"with middleware {statistics.median(t_wrapped):6.1f} us -> overhead median "
              f"{med:6.1f} us, p99 {p99:6.1f} us")  # fmt: skip
    d_times = []
    scope = scope_for(free.secret)
    for _ in range(n):
        t0 = time.perf_counter_ns()
        d = await core.decide("GET", "/v1/users", "", scope["headers"])
        core.publish(core.event(d, method="GET", path="/v1/users", query="", status=200,
                                peer="203.0.113.7", xff=None))  # fmt: skip
        d_times.append((time.perf_counter_ns() - t0) / 1000)
    core.publisher._buf.clear()
    print(f"   core alone (decide + event): median {statistics.median(d_times):.1f} us, "
          f"p99 {pct(d_times, 0.99):.1f} us")  # fmt: skip
    await core.close()


async def load(url: str, headers: dict[str, str], seconds: float, conc: int) -> list[float]:
    """Closed-loop load (aiohttp: a lighter client than httpx): ``conc`` clients for
    ``seconds``; returns the latencies (s) of 2xx answers."""
    import aiohttp

    lat: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                async with client.get(url, headers=headers) as r:
                    await r.read()
                    if r.status < 300:
                        lat.append(time.perf_counter() - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(conc)))
    if errors:
        print(f"   ({errors} non-2xx answers)")
    return lat


def report(label: str, lat: list[float], seconds: float) -> None:
    """One line: requests/s and latency percentiles."""
    print(f"   {label:<34} {len(lat) / seconds:8.0f} req/s   p50 {pct(lat, .5) * 1e3:6.2f} ms   "
          f"p99 {pct(lat, .99) * 1e3:6.2f} ms")  # fmt: skip


async def http_sections(env: dict[str, str], db: str, redis_url: str, broker: EmbeddedBroker,
                        seconds: float, conc: int, rounds: int) -> None:  # fmt: skip
    """Sections 2-5 over real HTTP."""
    store = KeyStore(db)
    key, _ = store.create("bench")
    auth = {"Authorization": f"Bearer {key.secret}"}
    tmp = Path(tempfile.mkdtemp(prefix="kwgw-"))
    procs = []
    try:
        bare_l, prot_l = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        procs.append(devrun.start([*devrun.sample_api_command(bare_l), "--open"], env, tmp / "a"))
        procs.append(devrun.start(devrun.sample_api_command(prot_l), env, tmp / "b"))
        gws = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        procs += [devrun.start_gateway(g, env, tmp / f"gw{i}") for i, g in enumerate(gws)]
        for listen, proc in ((bare_l, procs[0]), (prot_l, procs[1])):
            devrun.wait_healthy(listen, proc)
        print(f"2. sample Starlette app under uvicorn, {conc} concurrent clients")
        for listen in (bare_l, prot_l):
            await load(f"http://{listen}/v1/users", auth, 1.0, conc)  # warm-up
        for rnd in (1, 2):  # alternated: the machine's load drifts between runs
            for label, listen in (("without middleware", bare_l),
                                  ("with KeywatchMiddleware", prot_l)):  # fmt: skip
                lat = await load(f"http://{listen}/v1/users", auth, seconds / 2, conc)
                report(f"{label} (round {rnd})", lat, seconds / 2)
        print(f"3. keywatch gateway (ext_authz service), {conc} concurrent clients")
        await load(f"http://{gws[0]}/authz/v1/users", auth, 1.0, conc)
        report("decisions", await load(f"http://{gws[0]}/authz/v1/users", auth, seconds, conc),
               seconds)  # fmt: skip
        await propagation(store, redis_url, broker, gws, rounds)
        await exactness(store, gws)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
        store.close()


async def propagation(store: KeyStore, redis_url: str, broker: EmbeddedBroker,
                      gws: list[str], rounds: int) -> None:  # fmt: skip
    """Section 4: revoke, then poll both replicas until both refuse."""
    view = RedisView(redis_url)
    announcer = KafkaAnnouncer([broker.bootstrap], os.environ["KEYWATCH_TOPIC_KEY_ACTIONS"])
    service = KeyService(store, view, announcer)
    delays: list[float] = []
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(rounds):
            new, rec = store.create("bench")
            h = {"Authorization": f"Bearer {new.secret}"}
            for g in gws:
                assert (await client.get(f"http://{g}/authz/x", headers=h)).status_code == 200
            t0 = time.perf_counter()
            await service.revoke(rec.key_id, "bench")
            pending = set(gws)
            while pending:
                codes = await asyncio.gather(*(client.get(f"http://{g}/authz/x", headers=h)
                                               for g in pending))  # fmt: skip
                pending = {g for g, r in zip(list(pending), codes, strict=True)
                           if r.status_code != 401}  # fmt: skip
            delays.append(time.perf_counter() - t0)
    await announcer.close()
    await view.close()
    print(f"4. revocation -> enforced on both of 2 replicas ({rounds} revocations, "
          f"includes the SQL commit and outbox drain): p50 {pct(delays, .5) * 1e3:.1f} ms, "
          f"p99 {pct(delays, .99) * 1e3:.1f} ms, max {max(delays) * 1e3:.1f} ms")  # fmt: skip


async def exactness(store: KeyStore, gws: list[str]) -> None:
    """Section 5: N concurrent requests over two replicas against limit L."""
    print("5. rate-limit exactness (concurrent requests over 2 replicas)")
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        for n, lim in ((200, 50), (1000, 100), (500, 499)):
            new, _ = store.create("bench", rate_limits=[f"{lim}/hour"])
            h = {"Authorization": f"Bearer {new.secret}"}
            rs = await asyncio.gather(*(client.get(f"http://{gws[i % 2]}/authz/x", headers=h)
                                        for i in range(n)))  # fmt: skip
            ok = sum(r.status_code == 200 for r in rs)
            print(f"   N={n:<5} L={lim:<4} allowed {ok}  ({'exact' if ok == lim else 'NOT exact'})")


async def main() -> None:
    """Run every section."""
    parser = argparse.ArgumentParser(description=__doc__)
    default_redis = os.environ.get("KEYWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    parser.add_argument("--redis-url", default=default_redis)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5_000 if args.quick else 30_000
    seconds = 3.0 if args.quick else 8.0
    tmp = Path(tempfile.mkdtemp(prefix="kwbench-"))
    db = f"sqlite:///{tmp / 'keys.db'}"
    KeyStore(db).close()
    await overhead(db, args.redis_url, n)
    with EmbeddedBroker(log_path=tmp / "tansu.log") as broker:
        suffix = os.urandom(3).hex()
        env = {
            "KEYWATCH_BROKER": broker.url, "KEYWATCH_DATABASE_URL": db,
            "KEYWATCH_REDIS_URL": args.redis_url, "KEYWATCH_LOG_LEVEL": "WARNING",
            "KEYWATCH_TOPIC_ACCESS": f"bench-access-{suffix}",
            "KEYWATCH_TOPIC_KEY_ACTIONS": f"bench-actions-{suffix}",
            "PYTHONPATH": str(ROOT),
        }  # fmt: skip
        os.environ.update({k: v for k, v in env.items() if k.startswith("KEYWATCH_TOPIC")})
        await http_sections(env, db, args.redis_url, broker, seconds, 16,
                            20 if args.quick else 100)  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())

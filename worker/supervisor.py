"""``keywatch worker --processes N``: N worker processes on one host, one core each.

One worker process runs in one event loop and so uses one core. The supervisor starts N
ordinary ``keywatch worker`` processes (``KEYWATCH_WORKER_PROCESSES=1`` each): they join the same
consumer groups, exactly as replicas on several hosts do, so the broker spreads the access
partitions over their ingest consumers and the ``keywatch.events-by-key`` partitions (hence each
key's profile, by ``worker.partitioning.partition_for``) over their profile agents. Nothing is
shared between them but the broker, the key store and Redis.

The supervisor serves the configured ``/health`` (200 when every process answers 200) and
``/metrics`` (every process's samples summed, so counters read as one worker's); each child
serves its own on a free port. SIGTERM/SIGINT stop every child (each with its own stop
deadline). A child that dies is restarted; one that dies ``MAX_CRASHES`` times within
``CRASH_WINDOW_S`` stops the whole worker with exit status 1 and an error line, so an
orchestrator sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import structlog
from aiohttp import ClientSession, ClientTimeout, web
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from worker import children
from worker.settings import Settings

log = structlog.get_logger("keywatch.supervisor")

MAX_CRASHES, CRASH_WINDOW_S = 3, 60.0
RESTART_DELAY_S = 1.0
CHECK_S = 0.25
CHILD_TIMEOUT = ClientTimeout(total=3)


def default_processes(settings: Settings) -> int:
    """``KEYWATCH_WORKER_PROCESSES``, or one per CPU core this process may run on."""
    if settings.worker_processes:
        return settings.worker_processes
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class _Families:
    """A prometheus_client collector of ready-made metric families."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def merge_metrics(texts: Iterable[str]) -> bytes:
    """Prometheus texts of several processes as one: each sample summed over the processes
    (``_created`` timestamps: the earliest)."""
    families: dict[str, Metric] = {}
    sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name not in families:
                families[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                sums[fam.name] = {}
            acc = sums[fam.name]
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                old = acc.get(key)
                if old is None:
                    acc[key] = s.value
                elif s.name.endswith("_created"):
                    acc[key] = min(old, s.value)
                else:
                    acc[key] = old + s.value
    for name, fam in families.items():
        for (sample, labels), value in sums[name].items():
            fam.add_sample(sample, dict(labels), value)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families.values())))
    return generate_latest(registry)


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(self, settings: Settings, processes: int, loglevel: str) -> None:
        self.settings, self.n, self.loglevel = settings, processes, loglevel
        self.ports = [_free_port(settings.web_host) for _ in range(processes)]
        wildcard = settings.web_host in ("", "0.0.0.0", "::")  # noqa: S104 - only compared
        self.child_host = "127.0.0.1" if wildcard else settings.web_host
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * processes
        self.crashes: deque[float] = deque()
        self.stopping = asyncio.Event()
        self.failed: str | None = None

    def _spawn(self, i: int) -> None:
        env = {**os.environ, "KEYWATCH_WORKER_PROCESSES": "1",
               "KEYWATCH_WEB_PORT": str(self.ports[i])}  # fmt: skip
        argv = [sys.executable, "-m", "worker.cli", "worker", "--loglevel", self.loglevel]
        self.procs[i] = children.spawn(argv, env=env, stdout=sys.stdout)
        log.info("worker_process_started", index=i, pid=self.procs[i].pid, port=self.ports[i])  # type: ignore[union-attr]

    def _check(self) -> None:
        """Restart dead children; give up (set ``failed``) when they keep dying."""
        for i, proc in enumerate(self.procs):
            if proc is None or proc.poll() is None:
                continue
            now = time.monotonic()
            self.crashes.append(now)
            while self.crashes and now - self.crashes[0] > CRASH_WINDOW_S:
                self.crashes.popleft()
            log.error("worker_process_died", index=i, pid=proc.pid, status=proc.returncode)
            if len(self.crashes) >= MAX_CRASHES:
                self.failed = (
                    f"worker processes died {len(self.crashes)} times in "
                    f"{CRASH_WINDOW_S:.0f}s (last: exit status {proc.returncode}); stopping"
                )
                return
            self.procs[i] = None
            asyncio.get_running_loop().call_later(RESTART_DELAY_S, self._respawn, i)

    def _respawn(self, i: int) -> None:
        if self.procs[i] is None and not self.stopping.is_set() and self.failed is None:
            self._spawn(i)

    async def run(self) -> int:
        """Run until a signal (exit 0) or children that keep dying (exit 1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        runner = await self._serve()
        try:
            for i in range(self.n):
                self._spawn(i)
            while not self.stopping.is_set() and self.failed is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), CHECK_S)
                self._check()
        finally:
            live = [p for p in self.procs if p is not None]
            # each child stops within its own deadline (worker.commands.run.STOP_DEADLINE_S)
            await asyncio.to_thread(children.stop, live, 12.0)
            await runner.cleanup()
        if self.failed:
            sys.stderr.write(f"keywatch: {self.failed}\n")
            return 1
        return 0

    async def _serve(self) -> web.AppRunner:
        """The worker's /health and /metrics, over every child."""
        session: ClientSession | None = None

        async def fetch(path: str) -> list[tuple[int, str]]:
            nonlocal session
            if session is None:
                session = ClientSession(timeout=CHILD_TIMEOUT)

            async def one(port: int) -> tuple[int, str]:
                try:
                    async with session.get(f"http://{self.child_host}:{port}{path}") as r:
                        return r.status, await r.text()
                except Exception as exc:  # a child starting or restarting: not healthy
                    return 503, repr(exc)

            return list(await asyncio.gather(*(one(p) for p in self.ports)))

        async def health(request: web.Request) -> web.Response:
            got = await fetch("/health")
            ok = all(status == 200 for status, _ in got)
            body = "[" + ",".join(_json_or_str(t) for _, t in got) + "]"
            return web.Response(
                text=f'{{"status": "{"ok" if ok else "degraded"}", "processes": {body}}}',
                status=200 if ok else 503, content_type="application/json",
            )  # fmt: skip

        async def metrics(request: web.Request) -> web.Response:
            got = await fetch("/metrics")
            texts = [t for status, t in got if status == 200]
            merged = await asyncio.to_thread(merge_metrics, texts)
            return web.Response(body=merged, content_type="text/plain", charset="utf-8")

        async def close_session(app: Any) -> None:
            if session is not None:
                await session.close()

        app = web.Application()
        app.router.add_get("/health", health)
        app.router.add_get("/metrics", metrics)
        app.on_cleanup.append(close_session)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.web_host, self.settings.web_port)
        await site.start()
        return runner


def _json_or_str(text: str) -> str:
    """A child's /health body as JSON (it is JSON unless the child did not answer)."""
    import orjson

    try:
        return orjson.dumps(orjson.loads(text)).decode()
    except orjson.JSONDecodeError:
        return orjson.dumps({"status": "down", "error": text[:200]}).decode()


def supervise(settings: Settings, processes: int, loglevel: str) -> int:
    """Run ``processes`` worker processes until stopped; returns the exit status."""
    return asyncio.run(Supervisor(settings, processes, loglevel).run())

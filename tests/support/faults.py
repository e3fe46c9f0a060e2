"""Fault-injection helpers for end-to-end tests: a service "switch" (a TCP proxy in its own
thread) and polling (receivers that fail or hang: ``tests.support.receiver``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tests.unit.response.proxy import TcpProxy
from worker.devstack import free_port


def with_port(url: str, port: int) -> str:
    """``url`` pointed at ``127.0.0.1:port`` (user name kept): how a process reaches a proxy."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)
    host = f"{user[0]}@127.0.0.1:{port}" if len(user) == 2 else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=host))


class ServiceSwitch:
    """A TCP proxy to a real service, run in its own thread: ``down()`` refuses and cuts every
    connection (as a stopped server would), ``up()`` forwards again on the same port."""

    def __init__(self, target_url: str, default_port: int) -> None:
        target = urlsplit(target_url)
        self.port = free_port()
        self.url = with_port(target_url, self.port)
        self._proxy = TcpProxy(self.port, target.hostname or "127.0.0.1",
                               target.port or default_port)  # fmt: skip
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def up(self) -> None:
        """Accept and forward connections."""
        self._call(self._proxy.start())

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._call(self._proxy.stop())

    def close(self) -> None:
        """Stop forwarding and the thread."""
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> ServiceSwitch:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def wait_for(predicate: Callable[[], Any], within: float, what: str) -> None:
    """Poll ``predicate`` (sync, run in a thread) every 0.2 s; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {within}s waiting for {what}")

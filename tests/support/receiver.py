"""A local HTTP server standing in for Slack, PagerDuty or a webhook receiver: it records what it
is sent and answers as scripted, or hangs (a receiver that never answers)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# A policy for tests with receivers: deliveries retried quickly (3 attempts 50-100 ms apart), no
# pause between Slack posts.
FAST_DELIVERY = """
[delivery]
max_attempts = 3
base_delay_s = 0.05
max_delay_s = 0.1
slack_min_interval_s = 0.0
"""


@dataclass
class Received:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Records requests; answers from ``script`` (status, headers) in order, then ``default``,
    after ``delay_s`` (a hang when the delay outlasts the client's timeout)."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (200, {})
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    released: threading.Event = field(default_factory=threading.Event)  # ends the hangs

    @property
    def url(self) -> str:
        """Where keywatch should POST."""
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self) -> tuple[int, dict[str, str]]:
        """The next scripted answer, else the default."""
        return self.script.pop(0) if self.script else self.default

    def bodies(self) -> list[str]:
        """Every body received, decoded."""
        return [r.body.decode(errors="replace") for r in self.received]


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            rx.received.append(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                         time.monotonic())
            )  # fmt: skip
            status, headers = rx.answer()
            if rx.delay_s:
                rx.released.wait(rx.delay_s)  # released at shutdown
            with contextlib.suppress(OSError):  # the client may have given up meanwhile
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serving(rx: Receiver) -> Iterator[Receiver]:
    """Run the receiver on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rx))
    rx.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rx
    finally:
        rx.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)

"""A code host for the scanner end to end: a fake GitHub REST API on a loopback thread, and
signed push webhooks to post to a running ``keywatch scanner``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

from scanners.signatures import github_signature

SECRET = "integration-hook-secret"  # the scanner's KEYWATCH_GITHUB_WEBHOOK_SECRET in these tests
BEFORE, AFTER = "1" * 40, "2" * 40
KEYS_PATH = "/meta/public_keys/secret_scanning"


class FakeGitHub(ThreadingHTTPServer):
    """Serves ``files`` for compares and commits of ``repo`` (any repository when ``None``) and
    GitHub's secret-scanning keys (fetches counted); everything else is 404."""

    files: list[dict[str, Any]]
    repo: str | None
    key_fetches: int

    @property
    def url(self) -> str:
        """The API's base URL (``KEYWATCH_GITHUB_API_URL``)."""
        return f"http://127.0.0.1:{self.server_port}"

    def answer(self, path: str) -> tuple[int, bytes]:
        """Status and JSON body for a GET of ``path``."""
        if path.startswith(KEYS_PATH):
            self.key_fetches += 1
            return 200, b'{"public_keys": []}'
        repo = path.split("/")[2:4] if path.startswith("/repos/") else []
        if (self.repo is None or "/".join(repo) == self.repo) and (
            "/compare/" in path or "/commits/" in path
        ):
            return 200, json.dumps({"files": self.files}).encode()
        return 404, b'{"message": "Not Found"}'


class _Handler(BaseHTTPRequestHandler):
    server: FakeGitHub

    def do_GET(self) -> None:
        status, body = self.server.answer(self.path)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def fake_github(repo: str | None = "acme/app") -> Iterator[FakeGitHub]:
    """A running :class:`FakeGitHub` on a free loopback port, serving no files yet."""
    server = FakeGitHub(("127.0.0.1", 0), _Handler)
    server.files, server.repo, server.key_fetches = [], repo, 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def push_body(repo: str = "acme/app") -> bytes:
    """A GitHub push event from ``BEFORE`` to ``AFTER`` on a feature branch of ``repo``."""
    return orjson.dumps({
        "ref": "refs/heads/feature", "before": BEFORE, "after": AFTER,
        "repository": {"full_name": repo, "default_branch": "main"}, "commits": [{"id": AFTER}],
    })  # fmt: skip


def post(port: str, body: bytes, event: str = "push", delivery: str = "d-1", **h: str) -> int:
    """POST ``body`` to the scanner's GitHub webhook, signed with ``SECRET``: the status code."""
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": github_signature(SECRET, body), **h}  # fmt: skip
    url = f"http://127.0.0.1:{port}/webhooks/github"
    return httpx.post(url, content=body, headers=headers, timeout=10).status_code

"""The scanner agent's helpers without a broker: the background scan of deferred files (and its
dead letter when full) and the body gate of the webhook intake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from core.keyformat import generate_key
from scanners.fetch import FileChange
from scanners.intake import BodyTooLarge
from scanners.push import CodePush
from worker.agents.scanner import BackgroundScans, BodyGate, BodyGateFull

PUSH = CodePush(
    source="github", repository="acme/app", project="acme/app", before="a" * 40,
    after="b" * 40, ref="refs/heads/main", default_branch="main", commits=(),
)  # fmt: skip


class FakeApp:
    """The two things BackgroundScans uses from the scanner app."""

    def __init__(self) -> None:
        self.letters: list[tuple[str, str, Any, str]] = []
        self.settings = SimpleNamespace(topics=SimpleNamespace(code_push="code.push"))

    async def dead_letter(self, reason: str, source: str, payload: Any, detail: str = "") -> None:
        self.letters.append((reason, source, payload, detail))


def safe(path: str | None) -> str | None:
    return None if path is None else path.replace("sk_live_", "sk_live_…")


async def test_full_background_queue_dead_letters_with_safe_paths() -> None:
    app = FakeApp()
    background = BackgroundScans(app, safe, maxsize=1)  # type: ignore[arg-type]
    key = generate_key("live").secret
    files = [FileChange(f"{key}.txt", "b" * 40, content="x"), FileChange("a.py", "b" * 40)]
    await background.offer(PUSH, files)  # queued
    await background.offer(PUSH, files)  # queue full: dead letter
    assert background.queue.qsize() == 1
    [(reason, source, payload, _detail)] = app.letters
    assert (reason, source, payload["file_count"]) == ("scan_budget_exceeded", "code.push", 2)
    assert key not in repr(payload) and payload["files"][1] == {
        "path": "a.py", "commit": "b" * 40, "reason": "deferred"}  # fmt: skip


async def test_background_failure_is_a_dead_letter_and_the_loop_goes_on() -> None:
    app = FakeApp()
    background = BackgroundScans(app, safe)  # type: ignore[arg-type]
    scanned: list[list[FileChange]] = []

    class Scanner:
        async def scan_deferred(self, push: CodePush, files: list[FileChange]) -> list[Any]:
            if files[0].path == "boom.py":
                raise RuntimeError("engine bug")
            scanned.append(files)
            return []

    await background.offer(PUSH, [FileChange("boom.py", "c" * 40)])
    await background.offer(PUSH, [FileChange("fine.py", "c" * 40)])
    task = asyncio.create_task(background.run(Scanner()))  # type: ignore[arg-type]
    for _ in range(100):
        if scanned:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert [f.path for f in scanned[0]] == ["fine.py"]
    assert [letter[0] for letter in app.letters] == ["scan_error"]


@pytest.fixture
async def gate_client() -> AsyncIterator[tuple[TestClient[Any, Any], BodyGate]]:
    gate = BodyGate(max_pending=1, timeout_s=0.5, limit=1000)

    async def handler(request: web.Request) -> web.Response:
        authenticated = request.headers.get("X-Auth") == "yes"
        try:
            body = await gate.read(request, dict(request.headers), authenticated)
        except BodyTooLarge:
            return web.Response(status=413)
        except BodyGateFull:
            return web.Response(status=503)
        except TimeoutError:
            return web.Response(status=408)
        return web.Response(text=str(len(body)))

    app = web.Application()
    app.router.add_post("/", handler)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield client, gate
    await client.close()


async def test_body_gate(gate_client: tuple[TestClient[Any, Any], BodyGate]) -> None:
    client, gate = gate_client
    assert await (await client.post("/", data=b"x" * 10)).text() == "10"
    assert (await client.post("/", data=b"x" * 2000)).status == 413

    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.sleep(2)
        yield b"}"

    slow = asyncio.create_task(client.post("/", data=trickle()))
    for _ in range(100):  # the slow body holds the only unauthenticated slot
        if gate.pending:
            break
        await asyncio.sleep(0.01)
    assert (await client.post("/", data=b"y")).status == 503
    assert (await client.post("/", data=b"y", headers={"X-Auth": "yes"})).status == 200
    assert (await slow).status == 408  # and the slow one times out
    assert gate.pending == 0
    assert (await client.post("/", data=b"y")).status == 200

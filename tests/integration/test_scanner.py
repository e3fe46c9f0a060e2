"""The scanner end to end: a running ``keywatch scanner``, the real broker, Redis and both SQL
databases, a local fake GitHub API. A signed push whose diff leaks keys of the store: the live key
is revoked (SQL, Redis, announced), the test key reported, the unknown key never revoked, and no
full key appears in any finding, dead letter or log line."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from core.keyformat import generate_key
from scanners.signatures import github_signature
from tests.support.procs import keywatch_env, running
from worker.devstack import EmbeddedBroker
from worker.keystore.redis_view import RedisView
from worker.keystore.store import KeyStore

pytestmark = pytest.mark.services
SECRET = "integration-hook-secret"
BEFORE, AFTER = "1" * 40, "2" * 40


class FakeGitHub(ThreadingHTTPServer):
    """Serves one compare answer for acme/app; everything else is 404."""

    files: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: FakeGitHub

    def do_GET(self) -> None:
        if self.path.startswith(f"/repos/acme/app/compare/{BEFORE}...{AFTER}"):
            body = json.dumps({"files": self.server.files}).encode()
            self.send_response(200)
        else:
            body, _ = b'{"message": "Not Found"}', self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    server = FakeGitHub(("127.0.0.1", 0), _Handler)
    server.files = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def push_body(repo: str = "acme/app") -> bytes:
    return orjson.dumps({
        "ref": "refs/heads/feature", "before": BEFORE, "after": AFTER,
        "repository": {"full_name": repo, "default_branch": "main"}, "commits": [{"id": AFTER}],
    })  # fmt: skip


def post(port: str, body: bytes, event: str = "push", delivery: str = "d-1", **h: str) -> int:
    headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
               "X-Hub-Signature-256": github_signature(SECRET, body), **h}  # fmt: skip
    url = f"http://127.0.0.1:{port}/webhooks/github"
    return httpx.post(url, content=body, headers=headers, timeout=10).status_code


def post_chunked(port: str, body: bytes) -> int:
    url = f"http://127.0.0.1:{port}/webhooks/github"
    # A well-formed (if wrong) signature passes the header check, so the body is read.
    headers = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    content = iter([body[:40_000], body[40_000:]])
    return httpx.post(url, content=content, headers=headers, timeout=10).status_code


async def consume(broker: EmbeddedBroker, topic: str, want: int, wait_s: float = 60) -> list[Any]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    out: list[Any] = []
    try:
        async with asyncio.timeout(wait_s):
            while len(out) < want:
                batch = await consumer.getmany(timeout_ms=500)
                out += [orjson.loads(m.value) for msgs in batch.values() for m in msgs]
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return out


async def test_push_leaking_keys_end_to_end(
    broker: EmbeddedBroker, database_url: str, redis_url: str, topic_suffix: str,
    fake_github: FakeGitHub, tmp_path: Path,
) -> None:  # fmt: skip
    store = KeyStore(database_url)
    live, live_rec = store.create("acme", "live")
    test, test_rec = store.create("acme", "test")
    stranger = generate_key("live")  # valid checksum, never issued
    fake_github.files = [
        {"filename": ".env", "status": "added",
         "patch": f"@@ -0,0 +1,2 @@\n+DEBUG=1\n+PAYMENTS_KEY={live.secret}\n"},
        {"filename": "config/app.yaml", "status": "modified",
         "patch": f"@@ -1 +1,2 @@\n name: app\n+api_key: \"{test.secret}\"\n"},
        {"filename": "docs/example.md", "status": "modified",
         "patch": f"@@ -1 +1,2 @@\n # Usage\n+curl -H 'Authorization: Bearer {stranger.secret}'\n"},
    ]  # fmt: skip
    topics = {f"KEYWATCH_TOPIC_{t.upper()}": f"{t}-{topic_suffix}"
              for t in ("code_push", "leaks", "key_actions", "dead_letter")}  # fmt: skip
    env = keywatch_env(
        broker.url, database_url, tmp_path, redis_url,
        KEYWATCH_GITHUB_WEBHOOK_SECRET=SECRET,
        KEYWATCH_GITHUB_API_URL=f"http://127.0.0.1:{fake_github.server_port}",
        KEYWATCH_MAX_BODY_BYTES="65536", KEYWATCH_LOG_LEVEL="DEBUG", **topics,
    )  # fmt: skip
    port = env["KEYWATCH_SCANNER_WEB_PORT"]
    with running(["scanner"], env, tmp_path / "scanner.log", "KEYWATCH_SCANNER_WEB_PORT") as proc:
        body = push_body()
        assert post(port, body, "ping") == 200
        bad_sig = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
        assert post(port, body, "push", "d-x", **bad_sig) == 401
        big = b'{"pad": "' + b"x" * 70_000 + b'"}'
        assert post(port, big, "push", "d-big") == 413
        assert post_chunked(port, big) == 413  # no Content-Length: the read itself is bounded
        assert post(port, body, "push", "d-1") == 202
        assert post(port, body, "push", "d-1") == 202  # replay: ignored
        assert post(port, push_body("acme/missing"), "push", "d-2") == 202
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        await producer.send_and_wait(topics["KEYWATCH_TOPIC_CODE_PUSH"], b'{"source": garbage')
        await producer.stop()
        leaks = await consume(broker, topics["KEYWATCH_TOPIC_LEAKS"], 3)
        dead = await consume(broker, topics["KEYWATCH_TOPIC_DEAD_LETTER"], 2)
        actions = await consume(broker, topics["KEYWATCH_TOPIC_KEY_ACTIONS"], 1)
        metrics = proc.metrics("KEYWATCH_SCANNER_WEB_PORT")
    log = (tmp_path / "scanner.log").read_text(errors="replace")

    assert len(leaks) == 3, leaks
    by_key = {f["key_id"]: f for f in leaks}
    hit = by_key[live_rec.key_id]
    assert (hit["severity"], hit["action"], hit["status"]) == ("critical", "revoke", "active")
    assert (hit["path"], hit["line"], hit["repository"], hit["commit"]) == (
        ".env", 2, "acme/app", AFTER)  # fmt: skip
    assert by_key[test_rec.key_id]["action"] == "notify"
    assert (by_key[None]["status"], by_key[None]["path"]) == ("unknown", "docs/example.md")

    assert store.get(live_rec.key_id).status == "revoked"
    assert store.get(test_rec.key_id).status == "active"
    assert [a.action for a in store.audit(live_rec.key_id)].count("revoke") == 1
    redis = RedisView(redis_url)
    assert await redis.is_revoked(live.key_hash)
    assert not await redis.is_revoked(stranger.key_hash)
    await redis.close()
    assert [(a["key_id"], a["action"]) for a in actions] == [(live_rec.key_id, "revoke")]
    assert sorted(d["reason"] for d in dead) == ["bad_json", "fetch_refused"]
    assert 'keywatch_webhooks_total{outcome="duplicate",source="github"} 1.0' in metrics
    assert 'keywatch_webhooks_total{outcome="too_large",source="github"} 2.0' in metrics

    outputs = orjson.dumps([leaks, dead, actions]).decode() + log + metrics
    for key in (live.secret, test.secret, stranger.secret):
        assert key not in outputs
    store.close()

"""The scanner end to end: a running ``keywatch scanner``, the real broker, Redis and both SQL
databases, a local fake GitHub API. A signed push whose diff leaks keys of the store: the live key
is revoked (SQL, Redis, announced), the test key reported, the unknown key never revoked, and no
full key appears in any finding, dead letter or log line."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from core.keyformat import generate_key
from tests.support.codehost import AFTER, SECRET, FakeGitHub, post, push_body
from tests.support.kafka import collect_count, publish, topics_env
from tests.support.procs import keywatch_env, running
from worker.devstack import EmbeddedBroker
from worker.keystore.redis_view import RedisView
from worker.keystore.store import KeyStore

pytestmark = pytest.mark.services


def post_chunked(port: str, body: bytes) -> int:
    url = f"http://127.0.0.1:{port}/webhooks/github"
    # A well-formed (if wrong) signature passes the header check, so the body is read.
    headers = {"X-Hub-Signature-256": "sha256=" + "0" * 64}
    content = iter([body[:40_000], body[40_000:]])
    return httpx.post(url, content=content, headers=headers, timeout=10).status_code


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
    topics = topics_env(topic_suffix)
    env = keywatch_env(
        broker.url, database_url, tmp_path, redis_url,
        KEYWATCH_GITHUB_WEBHOOK_SECRET=SECRET,
        KEYWATCH_GITHUB_API_URL=fake_github.url,
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
        await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_CODE_PUSH"], [b'{"source": garbage'])
        leaks = await collect_count(broker.bootstrap, topics["KEYWATCH_TOPIC_LEAKS"], 3)
        dead = await collect_count(broker.bootstrap, topics["KEYWATCH_TOPIC_DEAD_LETTER"], 2)
        actions = await collect_count(broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"], 1)
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

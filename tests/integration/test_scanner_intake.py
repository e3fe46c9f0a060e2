"""Webhook intake of a running ``keywatch scanner`` over real sockets, and leaks outside file
contents: both GitHub content types (vendor sample payload), replays under new delivery ids,
slow and half-sent requests, oversized unauthenticated bodies, a non-UTF-8 signature header,
unsigned secret-scanning requests; a key in a commit message and one in a file path found and
revoked with nothing printed in full."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
import sqlalchemy as sa

from scanners.signatures import github_signature
from tests.support.codehost import KEYS_PATH, SECRET, FakeGitHub
from tests.support.kafka import collect_count, topics_env
from tests.support.procs import keywatch_env, running
from worker.devstack import EmbeddedBroker
from worker.keystore.store import KeyStore

pytestmark = pytest.mark.services
DATA = Path(__file__).parents[1] / "unit" / "scanners" / "data"


def raw_request(port: str, head: bytes, body: bytes = b"", wait_s: float = 10.0) -> bytes:
    """Send raw bytes; return whatever the server answers until it closes or ``wait_s``."""
    with socket.create_connection(("127.0.0.1", int(port)), timeout=wait_s) as sock:
        sock.sendall(head + body)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and b"Content-Length" in out:
                    length = int(out.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    if len(out.split(b"\r\n\r\n", 1)[1]) >= length:
                        break
        except TimeoutError:
            return out + b"<timeout>"
        return out


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def gh_head(body_len: int, signature: bytes, ctype: bytes = b"application/json") -> bytes:
    return (
        b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        b"X-GitHub-Delivery: d\r\nContent-Type: " + ctype + b"\r\nX-Hub-Signature-256: "
        + signature + b"\r\nContent-Length: " + str(body_len).encode() + b"\r\n\r\n"
    )  # fmt: skip


def drive_intake(port: str, payload: dict[str, Any], fake_github: FakeGitHub) -> None:
    """Every intake case against the running scanner (blocking sockets, so not in the loop)."""
    url = f"http://127.0.0.1:{port}"
    # GitHub's form content type (payload=...), signed over the raw form body.
    form = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1",
               "Content-Type": "application/x-www-form-urlencoded",
               "X-Hub-Signature-256": github_signature(SECRET, form)}  # fmt: skip
    assert httpx.post(f"{url}/webhooks/github", content=form, headers=headers).status_code == 202
    # The same signed body under a new (unsigned) delivery id: a duplicate, not fetched again.
    headers["X-GitHub-Delivery"] = "d-2"
    assert httpx.post(f"{url}/webhooks/github", content=form, headers=headers).status_code == 202
    # JSON content type, another push (deleted branch: nothing to fetch).
    deleted = json.loads((DATA / "github_push_new_branch.json").read_text())
    deleted.update(deleted=True, after="0" * 40, before=deleted["after"])
    body = orjson.dumps(deleted)
    answer = raw_request(port, gh_head(len(body), github_signature(SECRET, body).encode()), body)
    assert status_of(answer) == 202, answer[:200]

    # A signature header that is not UTF-8: 401, not a 500.
    bad = raw_request(port, gh_head(len(body), b"sha256=\xff\xfe" + b"0" * 62), body)
    assert status_of(bad) == 401, bad[:200]

    # Headers never finished: the server closes the connection after the header timeout.
    started = time.monotonic()
    half = raw_request(port, b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-Git", wait_s=15)
    assert half in (b"", b"<timeout>") or status_of(half) >= 400
    assert time.monotonic() - started < 10 and half != b"<timeout>"

    # A body that never arrives: 408 after the body timeout.
    shaped = b"sha256=" + b"0" * 64
    slow = raw_request(port, gh_head(1000, shaped), b"{", wait_s=15)
    assert status_of(slow) == 408, slow[:200]

    # Unauthenticated bodies are capped in number: two slow readers hold the slots.
    holders = [socket.create_connection(("127.0.0.1", int(port))) for _ in range(2)]
    for sock in holders:
        sock.sendall(gh_head(5_000_000, shaped) + b"{")
    time.sleep(0.3)
    busy = raw_request(port, gh_head(10, shaped), b"0123456789")
    assert status_of(busy) == 503, busy[:200]
    for sock in holders:
        sock.close()

    # GitLab: a wrong token is refused from the headers, before any of the 10 MB is sent.
    head = (b"POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: no\r\n"
            b"X-Gitlab-Event: Push Hook\r\nContent-Length: 10000000\r\n\r\n")  # fmt: skip
    gl = raw_request(port, head)
    assert status_of(gl) == 401, gl[:200]
    gl_body = (DATA / "gitlab_push.json").read_bytes()
    gl_headers = {"X-Gitlab-Token": "gl-token", "X-Gitlab-Event": "Push Hook",
                  "Content-Type": "application/json"}  # fmt: skip
    assert (
        httpx.post(f"{url}/webhooks/gitlab", content=gl_body, headers=gl_headers).status_code == 202
    )

    # Unsigned or made-up secret-scanning requests never fetch GitHub's keys.
    time.sleep(0.5)
    fetches_at_start = fake_github.key_fetches
    for h in ({}, {"Github-Public-Key-Identifier": "made-up",
                   "Github-Public-Key-Signature": "bm90IGEgc2lnbmF0dXJl"}):  # fmt: skip
        for _ in range(5):
            r = httpx.post(f"{url}/webhooks/github-secret-scanning", content=b"[]", headers=h)
            assert r.status_code == 401
    assert fake_github.key_fetches == fetches_at_start <= 1


async def test_intake_and_leaks_outside_file_contents(
    broker: EmbeddedBroker, database_url: str, redis_url: str, topic_suffix: str,
    fake_github: FakeGitHub, tmp_path: Path,
) -> None:  # fmt: skip
    store = KeyStore(database_url)
    in_message, msg_rec = store.create("acme", "live")
    in_path, path_rec = store.create("acme", "live")
    payload = json.loads((DATA / "github_push_new_branch.json").read_text())
    payload["commits"][0]["message"] = f"Initial commit\n\nuse {in_message.secret} for now"
    payload["head_commit"]["message"] = payload["commits"][0]["message"]
    fake_github.files = [{"filename": f"keys/{in_path.secret}.txt", "status": "added",
                        "patch": "@@ -0,0 +1 @@\n+nothing to see\n"}]  # fmt: skip
    topics = topics_env(topic_suffix)
    fake_github.repo = None  # the vendor sample's repository
    host = fake_github.url
    env = keywatch_env(
        broker.url, database_url, tmp_path, redis_url,
        KEYWATCH_GITHUB_WEBHOOK_SECRET=SECRET, KEYWATCH_GITLAB_WEBHOOK_SECRET="gl-token",
        KEYWATCH_GITHUB_API_URL=host,
        KEYWATCH_GITHUB_SECRET_SCANNING_KEYS_URL=f"{host}{KEYS_PATH}",
        KEYWATCH_WEBHOOK_HEADER_TIMEOUT_S="1", KEYWATCH_WEBHOOK_BODY_TIMEOUT_S="1",
        KEYWATCH_MAX_PENDING_BODIES="2", KEYWATCH_LOG_LEVEL="DEBUG", **topics,
    )  # fmt: skip
    port = env["KEYWATCH_SCANNER_WEB_PORT"]
    with running(["scanner"], env, tmp_path / "scanner.log", "KEYWATCH_SCANNER_WEB_PORT") as proc:
        drive_intake(port, payload, fake_github)
        leaks = await collect_count(broker.bootstrap, topics["KEYWATCH_TOPIC_LEAKS"], 2)
        dead = await collect_count(broker.bootstrap, topics["KEYWATCH_TOPIC_DEAD_LETTER"], 1, 10)
        actions = await collect_count(broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"], 2)
        metrics = proc.metrics("KEYWATCH_SCANNER_WEB_PORT")
    log = (tmp_path / "scanner.log").read_text(errors="replace")

    by_key = {f["key_id"]: f for f in leaks}
    assert set(by_key) == {msg_rec.key_id, path_rec.key_id}, leaks
    assert by_key[msg_rec.key_id]["location"] == "commit_message"
    assert by_key[path_rec.key_id]["location"] == "path"
    assert by_key[path_rec.key_id]["path"].startswith("keys/sk_live_")
    for rec in (msg_rec, path_rec):
        assert store.get(rec.key_id).status == "revoked"
    assert {a["key_id"] for a in actions} == {msg_rec.key_id, path_rec.key_id}
    assert 'keywatch_webhooks_total{outcome="duplicate",source="github"} 1.0' in metrics
    assert 'keywatch_webhooks_total{outcome="body_timeout",source="github"}' in metrics
    assert 'keywatch_webhooks_total{outcome="busy",source="github"}' in metrics

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        sql_rows = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM kw_leak_findings"))]
        audit = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM kw_key_audit"))]
        keys = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM kw_keys"))]
    engine.dispose()
    everything = (
        orjson.dumps([leaks, dead, actions]).decode()
        + log
        + metrics
        + repr([sql_rows, audit, keys])
    )
    for key in (in_message, in_path):
        assert key.secret not in everything
        assert key.secret[8:] not in everything
    store.close()

"""Webhook intake: status codes, signatures, dedupe (memory and Redis), secret-scanning alerts."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.keyformat import hash_key
from scanners.intake import BodyTooLarge, DeliveryDedupe, WebhookIntake, check_content_length
from scanners.push import decode_code_push
from scanners.signatures import SecretScanningKeys, github_signature
from worker.keystore.service import KeyService
from worker.keystore.store import KeyStore
from worker.metrics import Metrics
from worker.response.leaks import LeakResponder

SECRET = "gh-hook-secret"
PUSH = {
    "ref": "refs/heads/main", "before": "a" * 40, "after": "b" * 40,
    "repository": {"full_name": "acme/app", "default_branch": "main"},
    "commits": [{"id": "b" * 40}],
}  # fmt: skip


class Published(list[tuple[bytes, bytes]]):
    async def __call__(self, key: bytes, value: bytes) -> None:
        self.append((key, value))


def intake(dedupe: DeliveryDedupe | None = None, **kw: Any) -> tuple[WebhookIntake, Published]:
    published = Published()
    wi = WebhookIntake(
        github_secret=kw.pop("github_secret", SECRET), gitlab_secret=kw.pop("gitlab_secret", "gl"),
        publish=published, metrics=Metrics(), dedupe=dedupe or DeliveryDedupe(), **kw,
    )  # fmt: skip
    return wi, published


def gh_headers(body: bytes, event: str = "push", delivery: str = "d-1") -> dict[str, str]:
    return {"X-Hub-Signature-256": github_signature(SECRET, body), "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery, "Content-Type": "application/json"}  # fmt: skip


def webhook_count(wi: WebhookIntake, source: str, outcome: str) -> float:
    value = wi.metrics.registry.get_sample_value(
        "keywatch_webhooks_total", {"source": source, "outcome": outcome}
    )
    return value or 0.0


async def test_github_push_is_published_once() -> None:
    wi, published = intake()
    body = orjson.dumps(PUSH)
    r = await wi.github(gh_headers(body), body)
    assert r.status == 202
    [(key, value)] = published
    assert key == b"acme/app"
    msg = orjson.loads(value)
    assert msg["source"] == "github" and msg["payload"] == PUSH
    assert msg["headers"]["x-github-delivery"] == "d-1"
    assert "x-hub-signature-256" not in msg["headers"]
    assert decode_code_push(value).after == "b" * 40
    assert (await wi.github(gh_headers(body), body)).status == 202  # replayed delivery
    assert len(published) == 1
    assert webhook_count(wi, "github", "duplicate") == 1


@pytest.mark.parametrize(
    "mutate, status, outcome",
    [
        (lambda h, b: ({**h, "X-Hub-Signature-256": "sha256=" + "0" * 64}, b), 401, "unauthorized"),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "X-Hub-Signature-256"}, b),
            401,
            "unauthorized",
        ),
        (lambda h, b: (h, b + b" "), 401, "unauthorized"),
        (lambda h, b: (gh_headers(b"{nope", "push"), b"{nope"), 400, "bad_request"),
        (lambda h, b: (gh_headers(b"[1]", "push"), b"[1]"), 400, "bad_request"),
        (lambda h, b: (gh_headers(b'{"ref": 1}', "push"), b'{"ref": 1}'), 400, "bad_request"),
        (lambda h, b: (gh_headers(b, "ping"), b), 200, "ping"),
        (lambda h, b: (gh_headers(b, "issues"), b), 202, "ignored"),
    ],
)
async def test_github_status_codes(mutate: Any, status: int, outcome: str) -> None:
    wi, published = intake()
    body = orjson.dumps(PUSH)
    headers, body = mutate(gh_headers(body), body)
    r = await wi.github(headers, body)
    assert r.status == status
    assert published == []
    assert webhook_count(wi, "github", outcome) == 1


async def test_github_without_secret_refuses() -> None:
    wi, published = intake(github_secret=None)
    body = orjson.dumps(PUSH)
    assert (await wi.github(gh_headers(body), body)).status == 503
    assert published == []


def test_content_length_over_limit() -> None:
    with pytest.raises(BodyTooLarge):
        check_content_length({"Content-Length": "1001"}, 1000)
    check_content_length({"Content-Length": "1000"}, 1000)


async def test_publish_failure_is_503_and_the_delivery_can_be_retried() -> None:
    async def broken(key: bytes, value: bytes) -> None:
        raise ConnectionError("broker down")

    wi = WebhookIntake(github_secret=SECRET, gitlab_secret=None, publish=broken,
                       metrics=Metrics(), dedupe=DeliveryDedupe())  # fmt: skip
    body = orjson.dumps(PUSH)
    assert (await wi.github(gh_headers(body), body)).status == 503
    assert await wi.dedupe.first_time("github", "d-1")  # forgotten: a redelivery is accepted


GL_PUSH = {
    "object_kind": "push", "ref": "refs/heads/main", "before": "a" * 40, "after": "c" * 40,
    "project_id": 42, "project": {"id": 42, "path_with_namespace": "grp/proj"}, "commits": [],
}  # fmt: skip


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"X-Gitlab-Token": "gl", "X-Gitlab-Event": "Push Hook"}, 202),
        ({"X-Gitlab-Token": "gx", "X-Gitlab-Event": "Push Hook"}, 401),
        ({"X-Gitlab-Event": "Push Hook"}, 401),
        ({"X-Gitlab-Token": "gl", "X-Gitlab-Event": "Issue Hook"}, 202),
    ],
)
async def test_gitlab_status_codes(headers: dict[str, str], status: int) -> None:
    wi, published = intake()
    r = await wi.gitlab(headers, orjson.dumps(GL_PUSH))
    assert r.status == status
    assert len(published) == (1 if r.body == {"status": "accepted"} else 0)


async def test_gitlab_dedupe_on_event_uuid() -> None:
    wi, published = intake()
    h = {"X-Gitlab-Token": "gl", "X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": "u-1"}
    for _ in range(3):
        assert (await wi.gitlab(h, orjson.dumps(GL_PUSH))).status == 202
    assert len(published) == 1
    assert orjson.loads(published[0][1])["payload"]["project_id"] == 42


async def test_replicas_agree_through_redis(redis_url: str) -> None:
    one, two = DeliveryDedupe(redis_url), DeliveryDedupe(redis_url)
    try:
        assert await one.first_time("github", "shared-1")
        assert not await two.first_time("github", "shared-1")
        assert await two.first_time("github", "shared-2")
    finally:
        await one.close()
        await two.close()


def test_memory_dedupe_is_bounded() -> None:
    import asyncio

    d = DeliveryDedupe(max_items=10)

    async def run() -> None:
        for i in range(100):
            await d.first_time("github", str(i))

    asyncio.run(run())
    assert len(d._seen) <= 11


@pytest.fixture
async def keys_server() -> AsyncIterator[tuple[str, ec.EllipticCurvePrivateKey]]:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(
            {"public_keys": [{"key_identifier": "kid", "key": pem, "is_current": True}]}
        )

    app = web.Application()
    app.router.add_get("/keys", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/keys")), private
    await server.close()


async def test_secret_scanning_alert_revokes_and_answers_hashes(
    keys_server: tuple[str, ec.EllipticCurvePrivateKey], sqlite_url: str
) -> None:
    url, private = keys_server
    store = KeyStore(sqlite_url)
    live, rec = store.create("acme", "live")
    responder = LeakResponder(KeyService(store))
    wi, _ = intake(secret_scanning_keys=SecretScanningKeys(url), responder=responder)
    stranger = "sk_live_" + "Q" * 49
    body = orjson.dumps([
        {"token": live.secret, "type": "keywatch_live_key", "url": "https://gist.example/1",
         "source": "gist"},
        {"token": stranger, "type": "keywatch_live_key", "url": "https://x.example",
         "source": "content"},
    ])  # fmt: skip
    sig = base64.b64encode(private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"Github-Public-Key-Identifier": "kid", "Github-Public-Key-Signature": sig}
    r = await wi.github_secret_scanning(headers, body)
    assert r.status == 200
    assert r.body == [
        {"token_hash": live.key_hash, "token_type": "keywatch_live_key", "label": "true_positive"},
        {"token_hash": hash_key(stranger), "token_type": "keywatch_live_key",
         "label": "false_positive"},
    ]  # fmt: skip
    assert live.secret not in orjson.dumps(r.body).decode()
    assert store.get(rec.key_id).status == "revoked"
    assert "https://gist.example/1" in (store.get(rec.key_id).revoked_reason or "")
    bad = await wi.github_secret_scanning({**headers, "Github-Public-Key-Signature": "AAAA"}, body)
    assert bad.status == 401
    unsigned_garbage = await wi.github_secret_scanning(headers, b"{")
    assert unsigned_garbage.status == 401
    store.close()


async def test_replayed_body_with_a_new_delivery_id_is_a_duplicate() -> None:
    wi, published = intake()
    body = orjson.dumps(PUSH)
    for delivery in ("d-1", "d-2", "d-3"):  # the delivery id is not signed: it proves nothing
        assert (await wi.github(gh_headers(body, delivery=delivery), body)).status == 202
    assert len(published) == 1 and webhook_count(wi, "github", "duplicate") == 2


async def test_form_encoded_github_hook_is_accepted() -> None:
    wi, published = intake()
    body = urlencode({"payload": orjson.dumps(PUSH).decode()}).encode()
    headers = {**gh_headers(body), "Content-Type": "application/x-www-form-urlencoded"}
    assert (await wi.github(headers, body)).status == 202
    [(_key, value)] = published
    assert orjson.loads(value)["payload"] == PUSH
    for bad in (b"payload=%7Bnope", b"other=1", b"payload=1&payload=2", b"\xff=1"):
        headers = {**gh_headers(bad), "Content-Type": "application/x-www-form-urlencoded"}
        assert (await wi.github(headers, bad)).status == 400


@pytest.mark.parametrize(
    "signature", ["sha256=\udcff" + "0" * 63, "\udcff", "sha256=" + "é" * 64, "sha1=abc"]
)
async def test_non_ascii_or_malformed_signature_is_401(signature: str) -> None:
    wi, published = intake()
    body = orjson.dumps(PUSH)
    headers = {**gh_headers(body), "X-Hub-Signature-256": signature}
    assert wi.precheck("github", headers) is not None
    assert (await wi.github(headers, body)).status == 401 and published == []


def test_precheck_refuses_from_headers_alone() -> None:
    wi, _ = intake()
    assert wi.precheck("gitlab", {"X-Gitlab-Token": "wrong"}).status == 401  # type: ignore[union-attr]
    assert wi.precheck("gitlab", {"X-Gitlab-Token": "gl"}) is None
    assert wi.precheck("github", {}).status == 401  # type: ignore[union-attr]
    assert wi.precheck("github", {"X-Hub-Signature-256": "sha256=" + "0" * 64}) is None
    unsigned = wi.precheck("github-secret-scanning", {})
    assert unsigned is not None and unsigned.status == 503  # not configured in this intake

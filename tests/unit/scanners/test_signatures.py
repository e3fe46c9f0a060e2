"""Webhook signatures: GitHub's documented HMAC vector, GitLab tokens, secret-scanning ECDSA."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from core.errors import FetchError, InputError
from scanners.signatures import (
    SecretScanningKeys,
    github_signature,
    load_public_key,
    verify_ecdsa,
    verify_github_signature,
    verify_gitlab_token,
)

# ref: GitHub docs, "Validating webhook deliveries": testing the webhook payload validation.
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_documented_test_vector() -> None:
    assert github_signature(GH_SECRET, GH_BODY) == GH_SIG
    assert verify_github_signature(GH_SECRET, GH_BODY, GH_SIG)


@pytest.mark.parametrize(
    "secret, body, header",
    [
        (GH_SECRET, GH_BODY + b" ", GH_SIG),  # body changed
        (GH_SECRET, GH_BODY, GH_SIG[:-1] + "f"),  # signature changed
        (GH_SECRET, GH_BODY, GH_SIG.replace("sha256=", "sha1=")),
        (GH_SECRET, GH_BODY, GH_SIG.upper()),
        (GH_SECRET, GH_BODY, None),  # missing
        (GH_SECRET, GH_BODY, ""),
        (None, GH_BODY, GH_SIG),  # no secret configured: refuse, never accept unsigned
        ("", GH_BODY, GH_SIG),
        ("another secret", GH_BODY, GH_SIG),
    ],
)
def test_github_bad_signatures_are_refused(
    secret: str | None, body: bytes, header: str | None
) -> None:
    assert not verify_github_signature(secret, body, header)


@pytest.mark.parametrize(
    "secret, header, ok",
    [
        ("tok-123", "tok-123", True),
        ("tok-123", "tok-124", False),
        ("tok-123", "tok-12", False),
        ("tok-123", None, False),
        (None, "tok-123", False),
        ("", "", False),
        ("tok-123", "tök-123", False),
    ],
)
def test_gitlab_token(secret: str | None, header: str | None, ok: bool) -> None:
    assert verify_gitlab_token(secret, header) is ok


def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, pem.decode()


def sign(private: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    return base64.b64encode(private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


def test_ecdsa_signature() -> None:
    private, pem = keypair()
    key = load_public_key(pem)
    body = b'[{"token":"x","type":"t","url":"u","source":"content"}]'
    sig = sign(private, body)
    assert verify_ecdsa(key, body, sig)
    assert not verify_ecdsa(key, body + b" ", sig)
    assert not verify_ecdsa(key, body, "not base64!")
    assert not verify_ecdsa(key, body, base64.b64encode(b"\x30\x00").decode())
    other, _ = keypair()
    assert not verify_ecdsa(key, body, sign(other, body))


def test_bad_public_key() -> None:
    with pytest.raises(InputError):
        load_public_key("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


@pytest.fixture
async def keys_endpoint() -> AsyncIterator[tuple[TestServer, list[dict[str, object]], list[int]]]:
    published: list[dict[str, object]] = []
    hits: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(1)
        return web.json_response({"public_keys": published})

    app = web.Application()
    app.router.add_get("/meta/public_keys/secret_scanning", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server, published, hits
    await server.close()


async def test_secret_scanning_keys_fetched_cached_and_refreshed(keys_endpoint: object) -> None:
    server, published, hits = keys_endpoint  # type: ignore[misc]
    private, pem = keypair()
    published.append({"key_identifier": "k1", "key": pem, "is_current": True})
    keys = SecretScanningKeys(str(server.make_url("/meta/public_keys/secret_scanning")),
                              min_refresh_s=0.0)  # fmt: skip
    body = b'[{"token":"a","type":"b"}]'
    assert await keys.verify(body, "k1", sign(private, body))
    assert await keys.verify(body, "k1", sign(private, body))
    assert len(hits) == 1  # cached
    assert not await keys.verify(body, "k1", sign(keypair()[0], body))
    # A rotated key: the unknown identifier triggers one refresh.
    private2, pem2 = keypair()
    published.append({"key_identifier": "k2", "key": pem2, "is_current": True})
    assert await keys.verify(body, "k2", sign(private2, body))
    assert len(hits) == 2
    assert not await keys.verify(body, None, sign(private2, body))
    assert not await keys.verify(body, "k2", None)


async def test_secret_scanning_keys_unavailable() -> None:
    keys = SecretScanningKeys("http://127.0.0.1:9/keys")
    with pytest.raises(FetchError):
        await keys.verify(b"[]", "k1", sign(keypair()[0], b"[]"))


async def test_unsigned_or_malformed_requests_never_fetch(keys_endpoint: object) -> None:
    server, _published, hits = keys_endpoint  # type: ignore[misc]
    keys = SecretScanningKeys(str(server.make_url("/meta/public_keys/secret_scanning")))
    for key_id, signature in [(None, None), ("k9", None), ("k9", "c2ln"), ("k9", "not base64!"),
                              ("k\udcff", sign(keypair()[0], b"x")), ("k9", "\udcff")]:  # fmt: skip
        assert not await keys.verify(b"[]", key_id, signature)
    assert hits == []


async def test_refreshes_are_rate_limited_and_the_last_good_keys_serve(
    keys_endpoint: object,
) -> None:
    server, published, hits = keys_endpoint  # type: ignore[misc]
    private, pem = keypair()
    published.append({"key_identifier": "k1", "key": pem, "is_current": True})
    url = str(server.make_url("/meta/public_keys/secret_scanning"))
    keys = SecretScanningKeys(url, ttl_s=0.0, min_refresh_s=3600.0)
    await keys.refresh()  # at start
    assert len(hits) == 1
    body = b'[{"token":"a","type":"b"}]'
    forged = sign(keypair()[0], body)
    for _ in range(20):  # made-up key ids with well-formed signatures: at most one refresh
        assert not await keys.verify(body, "made-up", forged)
    assert len(hits) == 1  # the start fetch was the last one allowed within min_refresh_s
    published.clear()  # GitHub's endpoint now fails to list keys: the cached key still serves
    assert await keys.verify(body, "k1", sign(private, body))
    assert len(hits) == 1

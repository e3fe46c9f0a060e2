"""The two faces of the core: ``KeywatchMiddleware`` around a Starlette app and the
``ext_authz``-style service (Envoy, nginx ``auth_request``, Traefik forward-auth)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.core import GatewayCore
from gateway.middleware import KeywatchMiddleware
from gateway.sample_api import app as sample_app
from gateway.service import build_app
from tests.support.gateway import core_for

pytestmark = pytest.mark.services


@pytest.fixture
async def core(database_url: str, redis_url: str) -> AsyncIterator[GatewayCore]:
    c = core_for(database_url, redis_url)
    yield c
    await c.close()


@pytest.fixture
def keys(core: GatewayCore) -> dict[str, Any]:
    store = core.store
    good, rec = store.create("acme", rate_limits=["2/minute"])
    free, _ = store.create("acme")
    return {"limited": good.secret, "id": rec.key_id, "free": free.secret, "store": store}


def events(core: GatewayCore) -> list[dict[str, Any]]:
    return list(core.publisher._buf)


async def test_middleware_answers_and_publishes(core: GatewayCore, keys: dict[str, Any]) -> None:
    app = KeywatchMiddleware(sample_app(), core=core, exempt=("/health",))
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        ok = await client.get("/v1/users", headers={"Authorization": f"Bearer {keys['limited']}"})
        assert ok.status_code == 200 and ok.json()["users"]
        assert ok.headers["x-keywatch-key-id"] == keys["id"]
        assert ok.headers["x-ratelimit-limit"] == "2"
        assert ok.headers["x-ratelimit-remaining"] == "1"
        created = await client.post("/v1/orders", params={"api_key": keys["limited"]})
        assert created.status_code == 201
        assert created.headers["x-keywatch-warning"] == "key in query string"
        limited = await client.get("/v1/users", headers={"X-API-Key": keys["limited"]})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
        assert limited.headers["retry-after"]
        missing = await client.get("/v1/users")
        assert missing.status_code == 401
        assert missing.json() == {
            "error": {"code": "missing_api_key", "message": missing.json()["error"]["message"]}
        }
        assert (await client.get("/health")).status_code == 200  # exempt
        nf = await client.get("/nope", headers={"Authorization": f"ApiKey {keys['free']}"})
        assert nf.status_code == 404
        for answer in (ok, created, limited, missing, nf):  # no key in any answer header
            shown = repr(answer.headers.multi_items())
            assert keys["limited"] not in shown and keys["free"] not in shown
    got = events(core)
    assert [(e["status"], e["auth"]) for e in got] == [
        (200, "ok"),
        (201, "ok"),
        (429, "rate_limited"),
        (401, "missing"),
        (404, "ok"),
    ]
    assert got[1]["key_in_query"] is True and "api_key=REDACTED" in got[1]["path"]
    assert all(e["ip"] == "198.51.100.9" for e in got)
    blob = repr(got)
    assert keys["limited"] not in blob and keys["free"] not in blob


async def test_service_envoy_nginx_traefik(core: GatewayCore, keys: dict[str, Any]) -> None:
    app = build_app(core)
    await core.start()
    transport = httpx.ASGITransport(app=app, client=("10.0.0.2", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://authz") as client:
        # Envoy ext_authz (HTTP service): original method and path under path_prefix /authz
        r = await client.request(
            "DELETE", "/authz/v1/users/7", headers={"Authorization": f"Bearer {keys['free']}"}
        )
        assert r.status_code == 200 and r.headers["x-key-status"] == "active"
        # nginx auth_request: the original URI in X-Original-URI
        basic = base64.b64encode(f"{keys['free']}:".encode()).decode()
        r = await client.get(
            "/",
            headers={
                "Authorization": f"Basic {basic}",
                "X-Original-URI": "/v1/orders?x=1",
                "X-Original-Method": "POST",
            },
        )
        assert r.status_code == 200
        # Traefik forward-auth: key in the forwarded query string
        r = await client.get(
            "/",
            headers={"X-Forwarded-Uri": f"/v1/x?key={keys['free']}", "X-Forwarded-Method": "GET"},
        )
        assert r.status_code == 200 and r.headers["x-keywatch-warning"] == "key in query string"
        r = await client.get("/authz/v1/users", headers={"X-API-Key": "sk_live_nope"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "api_key_invalid"
        assert (await client.get("/health")).json()["status"] == "ok"
        metrics = (await client.get("/metrics")).text
    assert 'keywatch_gateway_decisions_total{auth="ok",status="200"} 3.0' in metrics
    assert "keywatch_gateway_events_dropped_total" in metrics
    got = events(core)
    assert [(e["method"], e["path"].split("?")[0]) for e in got] == [
        ("DELETE", "/v1/users/7"),
        ("POST", "/v1/orders"),
        ("GET", "/v1/x"),
        ("GET", "/v1/users"),
    ]
    assert "key_hash" in got[3] and "key_id" not in got[3]
    for text in (metrics, repr(got)):
        assert keys["free"] not in text


async def test_websocket_handshake_needs_a_key(core: GatewayCore, keys: dict[str, Any]) -> None:
    reached: list[str] = []

    async def ws_app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])
        await send({"type": "websocket.accept"})

    app = KeywatchMiddleware(ws_app, core=core)

    async def handshake(headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/v1/stream", "query_string": b"",
                 "headers": headers, "client": ("198.51.100.9", 1)}  # fmt: skip
        await app(scope, receive, send)
        return sent

    refused = await handshake([])
    assert refused == [{"type": "websocket.close", "code": 1008, "reason": "missing_api_key"}]
    assert reached == []
    accepted = await handshake([(b"x-api-key", keys["free"].encode())])
    assert accepted == [{"type": "websocket.accept"}] and reached == ["websocket"]
    assert [(e["status"], e["auth"]) for e in events(core)] == [(403, "missing"), (101, "ok")]

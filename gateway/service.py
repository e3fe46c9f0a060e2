"""``keywatch gateway``: an authorization service in the shape of Envoy's ``ext_authz`` HTTP
service (also nginx ``auth_request``, Traefik/Kong forward-auth).

Any method and path is a check of that request: ``200`` allows it (with headers to pass on),
``401``/``429`` refuse it with the contract's body. The original method and URI come from the
request itself (Envoy, with ``path_prefix`` stripped), or from ``X-Original-Method``/
``X-Original-URI`` (nginx) or ``X-Forwarded-Method``/``X-Forwarded-Uri`` (Traefik).
``/health`` and ``/metrics`` are the gateway's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.errors import ConfigError
from gateway.core import GatewayCore
from gateway.settings import GatewaySettings, split_listen

log = structlog.get_logger("keywatch.gateway")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE"]


def original_request(request: Request, prefix: str) -> tuple[str, str, str]:
    """(method, path, query) of the request being authorized."""
    h = request.headers
    method = h.get("x-original-method") or h.get("x-forwarded-method") or request.method
    uri = h.get("x-original-uri") or h.get("x-forwarded-uri")
    if uri:
        parts = urlsplit(uri)
        return method.upper(), parts.path or "/", parts.query
    path = request.url.path
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix) :] or "/"
    return method.upper(), path, request.url.query


def build_app(core: GatewayCore) -> Starlette:
    """The Starlette app of the authorization service around ``core``."""
    prefix = core.settings.check_prefix.rstrip("/")

    async def check(request: Request) -> Response:
        method, path, query = original_request(request, prefix)
        headers = request.scope["headers"]
        d = await core.decide(method, path, query, headers)
        client = request.client
        core.publish(core.event(
            d, method=method, path=path, query=query, status=d.status,
            peer=client.host if client else None,
            xff=request.headers.get("x-forwarded-for"),
            user_agent=request.headers.get("user-agent", ""),
            request_id=request.headers.get("x-request-id", ""),
        ))  # fmt: skip
        return Response(
            d.body(), status_code=d.status, headers=dict(d.headers()),
            media_type="application/json",
        )  # fmt: skip

    async def health(_request: Request) -> Response:
        if not core.started:
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "cached_keys": len(core.cache)})

    async def metrics(_request: Request) -> Response:
        return Response(core.metrics.render(), media_type=core.metrics.content_type)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await core.start()
        try:
            yield
        finally:
            await core.close()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/{path:path}", check, methods=METHODS),
        ],
        lifespan=lifespan,
    )


async def serve(settings: GatewaySettings) -> None:
    """Run the service until stopped (uvicorn, access log off: URIs can carry keys)."""
    import uvicorn

    host, port = split_listen(settings.listen)
    sock = bind(host, port)  # before anything starts: a taken port is one clear error
    core = GatewayCore(settings)
    config = uvicorn.Config(
        build_app(core), host=host, port=port, log_level="warning", access_log=False,
        lifespan="on", server_header=False,
    )  # fmt: skip
    log.info("gateway_listening", url=f"http://{settings.listen}", fail_mode=settings.fail_mode)
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; ``ConfigError`` when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit it: small answers must not wait for delayed ACKs (40 ms)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def run(settings: GatewaySettings) -> Any:
    """Blocking entry point of ``keywatch gateway``."""
    return asyncio.run(serve(settings))

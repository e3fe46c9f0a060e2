"""``KeywatchMiddleware``: the gateway's decisions in-process, for ASGI apps (Starlette, FastAPI).

Refusals are answered directly with the contract's status, headers and error body; allowed
requests reach the app with the ``X-RateLimit-*``/deprecation headers added to its response.
Every request is published to ``gateway.access`` with the status the client actually got.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from gateway.core import GatewayCore
from gateway.settings import GatewaySettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
JSON = (b"content-type", b"application/json")


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return ""


class KeywatchMiddleware:
    """Wraps an ASGI app: verify the key, enforce limits and keywatch's decisions, publish."""

    def __init__(
        self,
        app: ASGIApp,
        settings: GatewaySettings | None = None,
        *,
        core: GatewayCore | None = None,
        exempt: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.core = core or GatewayCore(settings or GatewaySettings.from_env())
        self.exempt = tuple(exempt)  # path prefixes served without a key (e.g. "/health")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._lifespan(receive), send)
            return
        if scope["type"] not in ("http", "websocket") or (
            self.exempt and scope["path"].startswith(self.exempt)
        ):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        core = self.core
        if not core.started:
            await core.start()
        headers = scope["headers"]
        method, path = scope["method"], scope["path"]
        query = scope["query_string"].decode("latin-1")
        d = await core.decide(method, path, query, headers)
        status = d.status
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in d.headers()]
        if d.allowed:
            sent: list[int] = []

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    sent.append(message["status"])
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            try:
                await self.app(scope, receive, send_with_headers)
            finally:
                status = sent[0] if sent else 500
                self._publish(d, scope, headers, method, path, query, status)
            return
        body = d.body()
        length = (b"content-length", str(len(body)).encode())
        await send({"type": "http.response.start", "status": status,
                    "headers": [JSON, length, *extra]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})
        self._publish(d, scope, headers, method, path, query, status)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake needs a key too; a refusal closes it (HTTP 403, code 1008)."""
        if not self.core.started:
            await self.core.start()
        headers = scope["headers"]
        path, query = scope["path"], scope["query_string"].decode("latin-1")
        d = await self.core.decide("GET", path, query, headers)
        if d.allowed:
            self._publish(d, scope, headers, "GET", path, query, 101)
            await self.app(scope, receive, send)
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008, "reason": d.code or ""})
        self._publish(d, scope, headers, "GET", path, query, 403)

    def _publish(
        self, d: Any, scope: Scope, headers: Any, method: str, path: str, query: str, status: int
    ) -> None:
        client = scope.get("client")
        self.core.publish(self.core.event(
            d, method=method, path=path, query=query, status=status,
            peer=client[0] if client else None, xff=_header(headers, b"x-forwarded-for") or None,
            user_agent=_header(headers, b"user-agent"),
            request_id=_header(headers, b"x-request-id"),
        ))  # fmt: skip

    def _lifespan(self, receive: Receive) -> Receive:
        """Start the core with the app, stop it (flushing events) when the app stops."""

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.core.start()
            elif message["type"] == "lifespan.shutdown":
                await self.core.close()
            return message

        return wrapped

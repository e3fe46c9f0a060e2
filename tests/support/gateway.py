"""Building gateway cores and asking them, for the gateway tests."""

from __future__ import annotations

import base64
from typing import Any

from gateway.core import GatewayCore
from gateway.decision import Decision
from gateway.settings import GatewaySettings
from worker.settings import Settings

NO_BROKER = "kafka://127.0.0.1:9"  # discard port: nothing answers there


def core_for(
    database_url: str, redis_url: str | None, broker: str = NO_BROKER, **kw: Any
) -> GatewayCore:
    """A core on real services; no publishing or Kafka following unless asked."""
    base = Settings(database_url=database_url, redis_url=redis_url, broker=broker,
                    topics=kw.pop("topics", Settings().topics))  # fmt: skip
    kw.setdefault("publish", False)
    kw.setdefault("follow_kafka", False)
    return GatewayCore(GatewaySettings(base=base, **kw))


def auth_headers(key: str | None, how: str = "bearer") -> list[tuple[bytes, bytes]]:
    """Request headers carrying ``key`` the way ``how`` says."""
    if key is None:
        return []
    if how == "bearer":
        return [(b"authorization", f"Bearer {key}".encode())]
    if how == "apikey":
        return [(b"authorization", f"ApiKey {key}".encode())]
    if how == "basic":
        return [(b"authorization", b"Basic " + base64.b64encode(f"{key}:".encode()))]
    return [(b"x-api-key", key.encode())]


async def ask(
    core: GatewayCore, key: str | None, *, how: str = "bearer", method: str = "GET",
    path: str = "/v1/users", query: str = "",
) -> Decision:  # fmt: skip
    """One decision, and its event queued like the faces do."""
    headers = [] if how == "query" else auth_headers(key, how)
    if how == "query" and key:
        query = f"api_key={key}"
    d = await core.decide(method, path, query, headers)
    core.publish(core.event(d, method=method, path=path, query=query, status=d.status,
                            peer="203.0.113.7", xff=None))  # fmt: skip
    return d

"""One POST for every sink: httpx errors and HTTP statuses become ``DeliveryError`` here.

5xx, 429 and network errors are retryable (429 carries ``Retry-After``); other 4xx are
permanent (``DeliveryGaveUp``: retrying the same body cannot help). Redirects are never followed,
so a request only ever reaches the configured URL.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from core.errors import DeliveryError, DeliveryGaveUp
from core.httpdate import retry_after


def client(
    timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The shared outbound client: bounded timeouts, no redirects, no environment proxies."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False,
        transport=transport, headers={"user-agent": "keywatch"},
    )  # fmt: skip


async def post(
    http: httpx.AsyncClient, sink: str, url: str, body: bytes, headers: Mapping[str, str]
) -> httpx.Response:
    """POST ``body``; returns the 2xx response or raises a ``DeliveryError`` naming the sink."""
    try:
        response = await http.post(url, content=body, headers=dict(headers))
    except httpx.HTTPError as exc:
        raise DeliveryError(f"{sink}: {type(exc).__name__}: {exc}") from exc
    status = response.status_code
    if 200 <= status < 300:
        return response
    if status == 429:
        raise DeliveryError(
            f"{sink}: 429 rate limited", retry_after(response.headers.get("retry-after"))
        )
    if status >= 500 or status == 408:
        raise DeliveryError(f"{sink}: HTTP {status}")
    raise DeliveryGaveUp(f"{sink}: HTTP {status} (not retryable): {response.text[:200]}")

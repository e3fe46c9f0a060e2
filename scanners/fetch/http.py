"""One HTTP client for code hosts: token auth, timeouts, no redirects, only the configured host,
rate limits honoured and transient failures retried with backoff.

Rate limits (ref: GitHub REST "Rate limits for the REST API" and GitLab "Rate limits"):
429, or 403 with ``x-ratelimit-remaining: 0`` or a ``Retry-After``, waits ``Retry-After`` seconds
or until ``x-ratelimit-reset`` (epoch seconds); 5xx and transport errors back off exponentially.
Other 4xx are permanent (``FetchRefused``). Waits are capped by ``RetryPolicy.max_delay_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import structlog

from worker.errors import FetchError

log = structlog.get_logger("keywatch.fetch")


class FetchRefused(FetchError):
    """The code host refused the request for good (404, 401, 403 without a rate limit...)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times and how long to wait (tests use tiny delays)."""

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    timeout_s: float = 20.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff for the ``attempt``-th retry (0-based)."""
        return float(min(self.max_delay_s, self.base_delay_s * (2**attempt)))


class ApiClient:
    """GET requests to one code-host API base, with auth, retries and rate-limit handling."""

    def __init__(
        self,
        base_url: str,
        auth_headers: Mapping[str, str],
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        parts = urlsplit(self.base_url)
        self._origin = (parts.scheme, parts.netloc)
        self.retry = retry or RetryPolicy()
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            headers=dict(auth_headers), timeout=self.retry.timeout_s,
            follow_redirects=False, transport=transport,
        )  # fmt: skip
        self._not_before = 0.0

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def url(self, path_or_url: str) -> str:
        """An absolute URL under the API base; refuses any other host (e.g. a forged Link)."""
        relative = "://" not in path_or_url
        url = urljoin(self.base_url, path_or_url.lstrip("/") if relative else path_or_url)
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            raise FetchRefused(f"refusing request outside the API base: {parts.netloc}")
        return url

    async def get(
        self,
        path_or_url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET with retries; returns a 2xx response or raises FetchError/FetchRefused."""
        url = self.url(path_or_url)
        last = "no attempt"
        for attempt in range(self.retry.attempts):
            await self._respect_reset()
            try:
                resp = await self._client.get(url, params=params, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                await self._sleep(self.retry.backoff(attempt), url, last)
                continue
            self._note_remaining(resp)
            if resp.is_success:
                if len(resp.content) > self.max_bytes:
                    raise FetchRefused(f"response over {self.max_bytes} bytes")
                return resp
            wait = self._rate_limit_wait(resp)
            last = f"HTTP {resp.status_code}"
            if wait is not None:
                await self._sleep(wait, url, last + " (rate limited)")
            elif resp.status_code >= 500:
                await self._sleep(self.retry.backoff(attempt), url, last)
            else:
                raise FetchRefused(f"{last} for {urlsplit(url).path}")
        raise FetchError(f"gave up after {self.retry.attempts} attempts: {last}")

    def _rate_limit_wait(self, resp: httpx.Response) -> float | None:
        """Seconds to wait when ``resp`` is a rate-limit answer, else None."""
        h = resp.headers
        limited = resp.status_code == 429 or (
            resp.status_code == 403
            and (h.get("x-ratelimit-remaining") == "0" or "retry-after" in h)
        )
        if not limited:
            return None
        wait = _float(h.get("retry-after"))
        if wait is None:
            reset = _float(h.get("x-ratelimit-reset"))
            wait = reset - time.time() if reset is not None else self.retry.base_delay_s
        return max(0.0, min(wait, self.retry.max_delay_s))

    def _note_remaining(self, resp: httpx.Response) -> None:
        """When the quota is spent, hold the next request until the reset time."""
        if resp.is_success and resp.headers.get("x-ratelimit-remaining") == "0":
            reset = _float(resp.headers.get("x-ratelimit-reset"))
            if reset is not None:
                self._not_before = min(reset, time.time() + self.retry.max_delay_s)

    async def _respect_reset(self) -> None:
        wait = self._not_before - time.time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _sleep(self, seconds: float, url: str, why: str) -> None:
        log.info("fetch_retry", path=urlsplit(url).path, why=why, wait_s=round(seconds, 3))
        await asyncio.sleep(seconds)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def next_link(resp: httpx.Response) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header (RFC 8288), if any."""
    nxt = resp.links.get("next")
    url = nxt.get("url") if nxt else None
    return url if isinstance(url, str) else None

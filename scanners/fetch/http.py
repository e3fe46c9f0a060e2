"""One HTTP client for code hosts: token auth, timeouts, no redirects, only the configured host,
rate limits honoured and transient failures retried with backoff.

Rate limits (ref: GitHub REST "Rate limits for the REST API" and GitLab "Rate limits"):
429, or 403 with ``x-ratelimit-remaining: 0`` or a ``Retry-After``, waits ``Retry-After`` seconds
or until ``x-ratelimit-reset`` (epoch seconds); 5xx and transport errors back off exponentially.
Other 4xx are permanent (``FetchRefused``). Waits are capped by the policy's ``max_delay_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import structlog

from core.errors import FetchError
from core.httpdate import retry_after
from core.retry import RetryPolicy

log = structlog.get_logger("keywatch.fetch")


class FetchRefused(FetchError):
    """The code host refused the request for good (404, 401, 403 without a rate limit...)."""


# ref: GitHub REST "Best practices": back off on secondary rate limits; a minute at most per wait
FETCH_RETRY = RetryPolicy(attempts=5, base_delay_s=1.0, max_delay_s=60.0)
TIMEOUT_S = 20.0


class _Transient(FetchError):
    """A failure another try may cure; ``wait``: what the host asked for (None: backoff)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class ApiClient:
    """GET requests to one code-host API base, with auth, retries and rate-limit handling."""

    def __init__(
        self,
        base_url: str,
        auth_headers: Mapping[str, str],
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_bytes: int = 50 * 1024 * 1024,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        parts = urlsplit(self.base_url)
        self._origin = (parts.scheme, parts.netloc)
        self._base_path = parts.path
        self.retry = retry or FETCH_RETRY
        self.max_bytes = max_bytes
        self._client = httpx.AsyncClient(
            headers=dict(auth_headers), timeout=timeout_s,
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
        """An absolute URL under the API base, built from checked parts.

        Refused: another scheme or host (a forged ``Link``), a path outside the base path,
        and any ``.``/``..`` segment (``../`` in a relative ``Link`` or a file name would
        otherwise reach other API paths with the token).
        """
        if "://" in path_or_url:
            url = path_or_url
        elif path_or_url.startswith("/") or "?" in path_or_url or "#" in path_or_url:
            raise FetchRefused("refusing a relative URL that is not a plain API path")
        else:
            url = self.base_url + path_or_url
        try:
            parts = urlsplit(url)
            origin = (parts.scheme, parts.netloc)
        except ValueError as exc:
            raise FetchRefused(f"refusing a malformed URL: {exc}") from exc
        if origin != self._origin:
            raise FetchRefused(f"refusing request outside the API base: {parts.netloc[:100]}")
        segments = parts.path.split("/")
        if not parts.path.startswith(self._base_path) or any(
            seg in (".", "..") or seg.lower() in ("%2e", "%2e%2e", ".%2e", "%2e.")
            for seg in segments
        ):
            raise FetchRefused("refusing a path outside the API base")
        return url

    async def get(
        self,
        path_or_url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET with retries; returns a 2xx response or raises FetchError/FetchRefused."""
        resp, data, truncated = await self._get(path_or_url, params, headers, self.max_bytes)
        if truncated:
            raise FetchRefused(f"response over {self.max_bytes} bytes")
        return httpx.Response(resp.status_code, headers=resp.headers, content=data,
                              request=resp.request)  # fmt: skip

    async def get_file(
        self,
        path_or_url: str,
        limit: int,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, bool]:
        """A file's first ``limit`` bytes and whether there were more (streamed, never buffered
        whole: the read stops at the limit)."""
        _resp, data, truncated = await self._get(path_or_url, params, headers, limit)
        return data, truncated

    async def _get(
        self,
        path_or_url: str,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        limit: int,
    ) -> tuple[httpx.Response, bytes, bool]:
        url = self.url(path_or_url)

        async def once() -> tuple[httpx.Response, bytes, bool]:
            await self._respect_reset()
            try:
                async with self._client.stream("GET", url, params=params, headers=headers) as resp:
                    self._note_remaining(resp)
                    if resp.is_success:
                        data, truncated = await _read_up_to(resp, limit)
                        return resp, data, truncated
            except httpx.HTTPError as exc:
                raise _Transient(f"{type(exc).__name__}: {exc}") from exc
            except (httpx.InvalidURL, ValueError) as exc:  # not HTTPError: a URL httpx refuses
                raise FetchRefused(f"invalid request URL: {exc}") from exc
            wait = self._rate_limit_wait(resp)
            if wait is not None:
                raise _Transient(f"HTTP {resp.status_code} (rate limited)", wait)
            if resp.status_code >= 500:
                raise _Transient(f"HTTP {resp.status_code}")
            raise FetchRefused(f"HTTP {resp.status_code} for {shown_path(url)}")

        async def retrying(attempt: int, exc: BaseException) -> None:
            log.info("fetch_retry", path=shown_path(url), why=str(exc), attempt=attempt)

        try:
            result, _ = await self.retry.call(
                once, _Transient, wait_of=lambda e: getattr(e, "wait", None), on_retry=retrying
            )
        except _Transient as exc:
            raise FetchError(f"gave up after {self.retry.attempts} attempts: {exc}") from exc
        return result

    def _rate_limit_wait(self, resp: httpx.Response) -> float | None:
        """Seconds to wait when ``resp`` is a rate-limit answer, else None."""
        h = resp.headers
        limited = resp.status_code == 429 or (
            resp.status_code == 403
            and (h.get("x-ratelimit-remaining") == "0" or "retry-after" in h)
        )
        if not limited:
            return None
        wait = retry_after(h.get("retry-after"))
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


async def _read_up_to(resp: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of the body, and whether the body was longer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


def path_part(path: str, *, keep_slashes: bool) -> str:
    """A file path as URL path text: each segment percent-encoded, ``.``/``..``/empty refused."""
    segments = path.split("/") if keep_slashes else [path]
    if not path or any(seg in ("", ".", "..") for seg in segments):
        raise FetchRefused("refusing a file path with empty, '.' or '..' segments")
    return "/".join(quote(seg, safe="") for seg in segments)


def shown_path(url: str) -> str:
    """The request path for logs and errors, without a file name (a key in a file name, in any
    encoding, must not reach a log line or a dead letter)."""
    path = urlsplit(url).path
    for marker in ("/contents/", "/repository/files/"):
        if marker in path:
            return path.split(marker, 1)[0] + marker + "…"
    return path


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

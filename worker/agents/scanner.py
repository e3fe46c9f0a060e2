"""The scanner app's agents and web routes: webhook intake and the ``code.push`` agent.

The agent stays thin: decode, ``PushScanner.scan`` (fetch, scan, verify, respond), publish the
first finding per key hash on ``keywatch.leaks``. A bad message or a push that cannot be fetched
becomes a dead letter with its reason; the agent never dies on one message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import structlog
from faust.web import Request, Response, View

from scanners.fetch import Fetcher
from scanners.fetch.github import GitHubFetcher
from scanners.fetch.gitlab import GitLabFetcher
from scanners.fetch.http import FetchRefused
from scanners.intake import BodyTooLarge, DeliveryDedupe, Reply, WebhookIntake, check_content_length
from scanners.push import decode_code_push
from scanners.response import Finding, LeakResponder
from scanners.signatures import SecretScanningKeys
from scanners.verify import PushScanner
from worker.errors import FetchError, InputError, KeyStoreUnavailable
from worker.redaction import redact_obj

if TYPE_CHECKING:
    from worker.scanner_app import ScannerApp

log = structlog.get_logger("keywatch.scanner")

SECRET_SCANNING = "github-secret-scanning"  # noqa: S105 - a source name
STORE_RETRIES = 5  # key store down: wait and retry the push this often before dead-lettering


def registrations() -> list[Callable[[ScannerApp], None]]:
    """The scanner's registrations, in order."""
    return [register_intake, register_push_agent]


def publisher(kapp: ScannerApp) -> Callable[[Finding], Awaitable[None]]:
    """Publish a finding on ``keywatch.leaks`` (keyed by key hash) and count it."""

    async def publish(finding: Finding) -> None:
        body = redact_obj(finding.to_dict())
        fut = await kapp.leaks_topic.send(
            key=str(body.get("key_hash", "")).encode(), value=orjson.dumps(body)
        )
        await fut
        kind = str(finding.alert.extra.get("leak_kind", "platform"))
        kapp.metrics.leaks.labels(kind=kind, status=finding.status).inc()
        kapp.metrics.alerts.labels(type="leak.public_code", severity=finding.alert.severity).inc()
        if finding.applied:
            kapp.metrics.actions.labels(action="revoke").inc()

    return publish


def responder_for(kapp: ScannerApp) -> LeakResponder:
    """The app's responder (one per app, shared by the intake and the agent)."""
    existing: LeakResponder | None = getattr(kapp, "leak_responder", None)
    if existing is None:
        existing = LeakResponder(kapp.keys, act=not kapp.settings.dry_run, publish=publisher(kapp))
        kapp.leak_responder = existing  # type: ignore[attr-defined]
    return existing


def register_intake(kapp: ScannerApp) -> None:
    """``POST /webhooks/github``, ``/webhooks/gitlab`` and ``/webhooks/github-secret-scanning``."""
    s = kapp.settings

    async def publish(key: bytes, value: bytes) -> None:
        fut = await kapp.code_push_topic.send(key=key, value=value)
        await fut

    # The GitHub token goes to the keys URL only when it is on the GitHub API's host.
    same_host = (
        urlsplit(s.github_secret_scanning_keys_url).netloc == urlsplit(s.github_api_url).netloc
    )
    keys_token = s.github_token if same_host else None
    intake = WebhookIntake(
        github_secret=s.github_webhook_secret, gitlab_secret=s.gitlab_webhook_secret,
        publish=publish, metrics=kapp.metrics, dedupe=DeliveryDedupe(s.redis_url),
        secret_scanning_keys=SecretScanningKeys(s.github_secret_scanning_keys_url, keys_token),
        responder=responder_for(kapp),
    )  # fmt: skip
    routes = {
        "/webhooks/github": ("github", intake.github),
        "/webhooks/gitlab": ("gitlab", intake.gitlab),
        "/webhooks/github-secret-scanning": (SECRET_SCANNING, intake.github_secret_scanning),
    }
    for path, (source, handler) in routes.items():
        kapp.app.page(path)(_view(kapp, source, handler))


def _view(
    kapp: ScannerApp, source: str, handler: Callable[[dict[str, str], bytes], Awaitable[Reply]]
) -> type[View]:
    limit = kapp.settings.max_body_bytes

    class Webhook(View):
        async def post(self, request: Request) -> Response:
            headers = dict(request.headers)
            try:
                body = await _read_limited(request, headers, limit)
            except BodyTooLarge:
                kapp.metrics.webhooks.labels(source=source, outcome="too_large").inc()
                return self.json({"status": "too_large"}, status=413)
            reply = await handler(headers, body)
            return self.json(reply.body, status=reply.status)

    Webhook.__name__ = f"Webhook_{source.replace('-', '_')}"
    return Webhook


async def _read_limited(request: Any, headers: dict[str, str], limit: int) -> bytes:
    """The raw body, refusing a declared or actual size over ``limit`` (no unbounded read)."""
    check_content_length(headers, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def register_push_agent(kapp: ScannerApp) -> None:
    """The ``code.push`` agent."""
    from scanners.engine import Engine

    s = kapp.settings
    fetchers: dict[str, Fetcher] = {
        "github": GitHubFetcher(s.github_api_url, s.github_token),
        "gitlab": GitLabFetcher(s.gitlab_url, s.gitlab_token),
    }
    scanner = PushScanner(Engine.default(), fetchers, responder_for(kapp))

    @kapp.app.agent(kapp.code_push_topic, name="scan-pushes")
    async def scan_pushes(stream: Any) -> None:
        async for raw in stream:
            kapp.metrics.messages.labels(topic=kapp.settings.topics.code_push).inc()
            await handle_push(kapp, scanner, raw)


async def handle_push(kapp: ScannerApp, scanner: PushScanner, raw: bytes) -> None:
    """Scan one ``code.push`` message; anything that fails ends as a dead letter with a reason."""
    source = kapp.settings.topics.code_push
    try:
        push = decode_code_push(raw)
    except InputError as exc:
        await kapp.dead_letter(exc.reason, source, raw, str(exc))
        return
    await kapp.store_ready.wait()
    for attempt in range(STORE_RETRIES):
        try:
            findings = await scanner.scan(push)
        except KeyStoreUnavailable as exc:
            if attempt + 1 == STORE_RETRIES:
                await kapp.dead_letter("key_store_unavailable", source, raw, str(exc))
                return
            await asyncio.sleep(min(30.0, 0.5 * 2**attempt))
            continue
        except FetchRefused as exc:
            await kapp.dead_letter("fetch_refused", source, raw, str(exc))
            return
        except FetchError as exc:  # the fetcher already retried with backoff
            await kapp.dead_letter("fetch_failed", source, raw, str(exc))
            return
        except InputError as exc:
            await kapp.dead_letter(exc.reason, source, raw, str(exc))
            return
        except Exception as exc:  # never let one push kill the agent
            log.exception("scan_failed", repository=push.repository)
            await kapp.dead_letter("scan_error", source, raw, repr(exc)[:500])
            return
        log.info("push_scanned", repository=push.repository, after=push.after,
                 findings=len(findings), responded=sum(f.first for f in findings))  # fmt: skip
        return

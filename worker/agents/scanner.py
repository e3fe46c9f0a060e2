"""The scanner app's agents and web routes: webhook intake and the ``code.push`` agent.

The agent stays thin: decode, ``PushScanner.scan`` (fetch, scan, verify, respond), publish the
first finding per key hash on ``keywatch.leaks``. A bad message or a push that cannot be fetched
becomes a dead letter with its reason; the agent never dies on one message. Files a push had no
time for (``KEYWATCH_SCAN_BUDGET_S``) are scanned by one background task; when its queue is
full they are dead-lettered (``scan_budget_exceeded``). Files that could not be fetched, or only
in part, are dead-lettered too (``file_not_scanned``), with their (redacted) paths.

Web intake: the headers are checked first (GitLab's token, the presence and shape of a GitHub
signature) so an unauthenticated sender never gets its body read; bodies that are read before
they can be authenticated are capped in number (``KEYWATCH_MAX_PENDING_BODIES``, then 503) and
in time (``KEYWATCH_WEBHOOK_BODY_TIMEOUT_S``, then 408); a connection must send its headers
within ``KEYWATCH_WEBHOOK_HEADER_TIMEOUT_S`` (aiohttp closes idle connections after that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import structlog
from faust.web import Request, Response, View

from core.errors import FetchError, InputError, KeyStoreUnavailable
from core.redaction import redact_obj
from core.retry import RetryPolicy
from scanners.fetch import Fetcher, FileChange
from scanners.fetch.github import GitHubFetcher
from scanners.fetch.gitlab import GitLabFetcher
from scanners.fetch.http import FetchRefused
from scanners.intake import BodyTooLarge, DeliveryDedupe, Reply, WebhookIntake, check_content_length
from scanners.push import CodePush, decode_code_push
from scanners.response import Finding
from scanners.signatures import SecretScanningKeys
from scanners.verify import PushScanner
from worker.response.leaks import LeakResponder

if TYPE_CHECKING:
    from worker.scanner_app import ScannerApp

log = structlog.get_logger("keywatch.scanner")

SECRET_SCANNING = "github-secret-scanning"  # noqa: S105 - a source name
# key store down: wait and retry the push this often before dead-lettering it
SCAN_RETRY = RetryPolicy(attempts=5, base_delay_s=0.5, max_delay_s=30.0)
BACKGROUND_QUEUE = 16  # pushes with deferred files waiting for the background scan


def registrations() -> list[Callable[[ScannerApp], None]]:
    """The scanner's registrations, in order."""
    return [register_intake, register_push_agent]


def publisher(kapp: ScannerApp) -> Callable[[Finding], Awaitable[None]]:
    """Publish a finding on ``keywatch.leaks`` (keyed by key hash) and count it."""

    async def publish(finding: Finding) -> None:
        body = redact_obj(finding.to_dict())
        await kapp.produce(
            kapp.leaks_topic, orjson.dumps(body), str(body.get("key_hash", "")).encode()
        )
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
        await kapp.produce(kapp.code_push_topic, value, key)

    # The GitHub token goes to the keys URL only when it is on the GitHub API's host.
    same_host = (
        urlsplit(s.github_secret_scanning_keys_url).netloc == urlsplit(s.github_api_url).netloc
    )
    keys_token = s.github_token if same_host else None
    keys = SecretScanningKeys(s.github_secret_scanning_keys_url, keys_token)
    intake = WebhookIntake(
        github_secret=s.github_webhook_secret, gitlab_secret=s.gitlab_webhook_secret,
        publish=publish, metrics=kapp.metrics, dedupe=DeliveryDedupe(s.redis_url),
        secret_scanning_keys=keys, responder=responder_for(kapp),
    )  # fmt: skip

    @kapp.app.task  # type: ignore[untyped-decorator]
    async def refresh_secret_scanning_keys() -> None:  # at start, then in the background
        await keys.refresh_loop()

    set_header_timeout(kapp.app, s.webhook_header_timeout_s)
    gate = BodyGate(s.max_pending_bodies, s.webhook_body_timeout_s, s.max_body_bytes)
    routes = {
        "/webhooks/github": ("github", intake.github),
        "/webhooks/gitlab": ("gitlab", intake.gitlab),
        "/webhooks/github-secret-scanning": (SECRET_SCANNING, intake.github_secret_scanning),
    }
    for path, (source, handler) in routes.items():
        kapp.app.page(path)(_view(kapp, source, handler, intake, gate))


def set_header_timeout(app: Any, seconds: float) -> None:
    """Close connections that have not sent a whole request head within ``seconds``.

    aiohttp (>= 3.10) arms its keep-alive timer when a connection opens and closes it if no
    complete request arrived by then; Faust builds the ``AppRunner`` without options, so the
    timeout is set on the runner's handler arguments (a Faust internal: faust.web.drivers.aiohttp).
    """
    runner = getattr(app.web, "_runner", None)
    kwargs = getattr(runner, "_kwargs", None)
    if isinstance(kwargs, dict):
        kwargs["keepalive_timeout"] = seconds
    else:  # another driver: say so rather than pretend
        log.warning("webhook_header_timeout_unavailable", driver=type(app.web).__name__)


class BodyGate:
    """Reads webhook bodies with a size limit, a deadline and a cap on concurrent unauthenticated
    reads (each one holds up to ``limit`` bytes of memory for anyone who can connect)."""

    def __init__(self, max_pending: int, timeout_s: float, limit: int) -> None:
        self.max_pending, self.timeout_s, self.limit = max_pending, timeout_s, limit
        self.pending = 0

    async def read(self, request: Any, headers: dict[str, str], authenticated: bool) -> bytes:
        """The body; BodyTooLarge, TimeoutError, or BodyGateFull when the cap is reached."""
        check_content_length(headers, self.limit)
        if not authenticated and self.pending >= self.max_pending:
            raise BodyGateFull()
        self.pending += 0 if authenticated else 1
        try:
            async with asyncio.timeout(self.timeout_s):
                return await _read_limited(request, self.limit)
        finally:
            self.pending -= 0 if authenticated else 1


class BodyGateFull(Exception):
    """Too many unauthenticated webhook bodies are being read at once."""


def _view(
    kapp: ScannerApp,
    source: str,
    handler: Callable[[dict[str, str], bytes], Awaitable[Reply]],
    intake: WebhookIntake,
    gate: BodyGate,
) -> type[View]:
    class Webhook(View):
        def outcome(self, name: str, status: int) -> Response:
            kapp.metrics.webhooks.labels(source=source, outcome=name).inc()
            return self.json({"status": name}, status=status)

        async def post(self, request: Request) -> Response:
            headers = dict(request.headers)
            early = intake.precheck(source, headers)
            if early is not None:
                return self.json(early.body, status=early.status)
            try:
                body = await gate.read(request, headers, intake.authenticated_by_headers(source))
            except BodyTooLarge:
                return self.outcome("too_large", 413)
            except BodyGateFull:
                return self.outcome("busy", 503)
            except TimeoutError:
                return self.outcome("body_timeout", 408)
            reply = await handler(headers, body)
            return self.json(reply.body, status=reply.status)

    Webhook.__name__ = f"Webhook_{source.replace('-', '_')}"
    return Webhook


async def _read_limited(request: Any, limit: int) -> bytes:
    """The raw body, refusing an actual size over ``limit`` (no unbounded read)."""
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
    engine = Engine.default()
    background = BackgroundScans(kapp, engine.safe_path)
    scanner = PushScanner(
        engine, fetchers, responder_for(kapp), budget_s=s.scan_budget_s,
        on_deferred=background.offer, on_skipped=background.report_skipped,
    )  # fmt: skip

    @kapp.app.agent(kapp.code_push_topic, name="scan-pushes")
    async def scan_pushes(stream: Any) -> None:
        async for raw in stream:
            kapp.metrics.messages.labels(topic=kapp.settings.topics.code_push).inc()
            await handle_push(kapp, scanner, raw)

    @kapp.app.task  # type: ignore[untyped-decorator]
    async def scan_deferred_files() -> None:
        await background.run(scanner)


class BackgroundScans:
    """Files a push had no time for, scanned one push at a time off the agent's path.

    The queue is bounded: when it is full the files are dead-lettered with their reason rather
    than held in memory without limit (an operator can rescan them with ``keywatch scan``).
    """

    def __init__(
        self,
        kapp: ScannerApp,
        safe_path: Callable[[str | None], str | None],
        maxsize: int = BACKGROUND_QUEUE,
    ) -> None:
        self.kapp, self.safe_path = kapp, safe_path
        self.queue: asyncio.Queue[tuple[CodePush, list[FileChange]]] = asyncio.Queue(maxsize)

    def _record(self, push: CodePush, files: list[FileChange], why: str) -> dict[str, Any]:
        return {
            "repository": push.repository, "after": push.after, "source": push.source,
            "files": [
                {"path": self.safe_path(f.path), "commit": f.commit, "reason": f.skipped or why}
                for f in files[:1000]
            ],
            "file_count": len(files),
        }  # fmt: skip

    async def offer(self, push: CodePush, files: list[FileChange]) -> None:
        """Queue the files for the background scan, or dead-letter them when the queue is full."""
        log.warning("push_scan_budget_spent", repository=push.repository, deferred=len(files))
        try:
            self.queue.put_nowait((push, files))
        except asyncio.QueueFull:
            await self.kapp.dead_letter(
                "scan_budget_exceeded", self.kapp.settings.topics.code_push,
                self._record(push, files, "deferred"),
                f"{len(files)} files not scanned within the push's time budget; queue full",
            )  # fmt: skip

    async def report_skipped(self, push: CodePush, files: list[FileChange]) -> None:
        """Files that could not be fetched, or only in part: a dead letter naming each one."""
        await self.kapp.dead_letter(
            "file_not_scanned", self.kapp.settings.topics.code_push,
            self._record(push, files, "not_scanned"),
            f"{len(files)} files of the push could not be scanned whole",
        )  # fmt: skip

    async def run(self, scanner: PushScanner) -> None:
        """Scan queued files forever; a failure dead-letters that push's files."""
        while True:
            push, files = await self.queue.get()
            try:
                findings = await scanner.scan_deferred(push, files)
            except Exception as exc:  # never let one push stop the background scans
                log.exception("deferred_scan_failed", repository=push.repository)
                await self.kapp.dead_letter(
                    "scan_error", self.kapp.settings.topics.code_push,
                    self._record(push, files, "deferred"), repr(exc)[:500],
                )  # fmt: skip
                continue
            log.info("deferred_files_scanned", repository=push.repository, files=len(files),
                     findings=len(findings))  # fmt: skip


async def handle_push(kapp: ScannerApp, scanner: PushScanner, raw: bytes) -> None:
    """Scan one ``code.push`` message; anything that fails ends as a dead letter with a reason."""
    source = kapp.settings.topics.code_push
    try:
        push = decode_code_push(raw)
    except InputError as exc:
        await kapp.dead_letter(exc.reason, source, raw, str(exc))
        return
    await kapp.store_ready.wait()
    try:
        findings, _ = await SCAN_RETRY.call(lambda: scanner.scan(push), KeyStoreUnavailable)
    except KeyStoreUnavailable as exc:
        await kapp.dead_letter("key_store_unavailable", source, raw, str(exc))
        return
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

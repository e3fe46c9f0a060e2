"""Webhook intake, independent of the web framework: ``(headers, body) -> Reply``.

- ``github``: ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body), ``ping`` answered, ``push``
  published to ``code.push`` and answered 202 at once (GitHub waits 10 s and does not retry),
  other events 202 ignored. Both content types GitHub sends: ``application/json`` and
  ``application/x-www-form-urlencoded`` (``payload=…``, the default of hooks made via the API).
- ``gitlab``: ``X-Gitlab-Token`` compared in constant time before the body is read, ``Push Hook``
  (and ``Tag Push Hook``).
- Deduplication is on the SHA-256 of the authenticated body: ``X-GitHub-Delivery`` is not
  signed, so a replayed body under a new delivery id is still a duplicate.
- ``github_secret_scanning``: GitHub's partner alerts, ECDSA P-256 signed; each token verified and
  answered at once (``[{token_hash, token_type, label}]``, never the token).

No secret configured means refuse (503), never accept unsigned. The order of checks (headers
via ``precheck`` before any body byte is read, size, authenticity, then parsing) keeps
unauthenticated input from reaching the parser or the dedupe.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from core.errors import FetchError, InputError, KeyStoreUnavailable
from core.keyformat import hash_key, redact_key, split_prefix
from scanners.push import decode_code_push, encode_code_push
from scanners.response import LeakContext, Responder
from scanners.signatures import (
    SIGNATURE_PREFIX,
    SecretScanningKeys,
    der_signature,
    verify_github_signature,
    verify_gitlab_token,
)

log = structlog.get_logger("keywatch.intake")

PublishPush = Callable[[bytes, bytes], Awaitable[None]]
MAX_SECRET_SCANNING_TOKENS = 1000


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status and JSON body."""

    status: int
    body: Any


class BodyTooLarge(InputError):
    """The request body exceeds the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body over {limit} bytes", reason="too_large")


def check_content_length(headers: Mapping[str, str], limit: int) -> None:
    """Refuse early on a declared ``Content-Length`` over the limit."""
    declared = headers.get("content-length") or headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)


class DeliveryDedupe:
    """Remembers delivery ids for ``ttl_s``: in memory (bounded) and, when given, in Redis
    (``SET NX EX``) so that replicas agree."""

    def __init__(
        self, redis_url: str | None = None, ttl_s: float = 72 * 3600, max_items: int = 100_000
    ) -> None:
        self.ttl_s, self.max_items = ttl_s, max_items
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._redis = aioredis.Redis.from_url(redis_url, socket_timeout=2) if redis_url else None

    async def first_time(self, source: str, delivery: str) -> bool:
        """True the first time ``(source, delivery)`` is offered within the TTL."""
        key = f"{source}:{delivery[:128]}"
        now = time.monotonic()
        self._expire(now)
        if key in self._seen:
            return False
        if self._redis is not None:
            try:
                fresh = await self._redis.set(
                    f"kw:delivery:{key}", b"1", nx=True, ex=int(self.ttl_s)
                )
                if not fresh:
                    self._seen[key] = now
                    return False
            except (RedisError, OSError) as exc:
                log.warning("dedupe_redis_unavailable", error=str(exc))
        self._seen[key] = now
        return True

    async def forget(self, source: str, delivery: str) -> None:
        """Undo ``first_time`` (publishing failed: a redelivery must be accepted)."""
        key = f"{source}:{delivery[:128]}"
        self._seen.pop(key, None)
        if self._redis is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._redis.delete(f"kw:delivery:{key}")

    async def close(self) -> None:
        """Close the Redis pool."""
        if self._redis is not None:
            await self._redis.aclose()

    def _expire(self, now: float) -> None:
        while self._seen and (
            len(self._seen) > self.max_items or now - next(iter(self._seen.values())) > self.ttl_s
        ):
            self._seen.popitem(last=False)


@dataclass(frozen=True, slots=True)
class TokenCandidate:
    """A token reported by GitHub secret scanning, as a scanner candidate (hash only)."""

    rule_id: str
    kind: str
    key_hash: str
    redacted: str
    path: str | None
    line: int | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form (no token)."""
        return {"rule_id": self.rule_id, "kind": self.kind, "key_hash": self.key_hash,
                "redacted": self.redacted, "path": self.path, "line": self.line}  # fmt: skip


class WebhookMetrics(Protocol):
    """The counter the intake reports to (``worker.metrics.Metrics`` has it)."""

    @property
    def webhooks(self) -> Any:
        """``keywatch_webhooks_total`` (labels ``source``, ``outcome``)."""
        ...


class WebhookIntake:
    """Authenticates, deduplicates and publishes code-host webhooks."""

    def __init__(
        self,
        *,
        github_secret: str | None,
        gitlab_secret: str | None,
        publish: PublishPush,
        metrics: WebhookMetrics,
        dedupe: DeliveryDedupe,
        secret_scanning_keys: SecretScanningKeys | None = None,
        responder: Responder | None = None,
    ) -> None:
        self.github_secret, self.gitlab_secret = github_secret, gitlab_secret
        self.publish, self.metrics, self.dedupe = publish, metrics, dedupe
        self.keys, self.responder = secret_scanning_keys, responder

    def _reply(self, source: str, outcome: str, status: int, body: Any = None) -> Reply:
        self.metrics.webhooks.labels(source=source, outcome=outcome).inc()
        return Reply(status, body if body is not None else {"status": outcome})

    def precheck(self, source: str, headers: Mapping[str, str]) -> Reply | None:
        """An answer from the headers alone (before reading the body), or None to read it."""
        h = _lower(headers)
        if source == "github":
            if not self.github_secret:
                return self._reply("github", "not_configured", 503)
            sig = h.get("x-hub-signature-256", "")
            if not sig.isascii() or not sig.startswith(SIGNATURE_PREFIX) or len(sig) != 71:
                return self._reply("github", "unauthorized", 401)
        elif source == "gitlab":
            if not self.gitlab_secret:
                return self._reply("gitlab", "not_configured", 503)
            if not verify_gitlab_token(self.gitlab_secret, h.get("x-gitlab-token")):
                return self._reply("gitlab", "unauthorized", 401)
        elif source == "github-secret-scanning":
            if self.keys is None or self.responder is None:
                return self._reply(source, "not_configured", 503)
            if (
                not h.get("github-public-key-identifier")
                or der_signature(h.get("github-public-key-signature", "")) is None
            ):
                return self._reply(source, "unauthorized", 401)
        return None

    def authenticated_by_headers(self, source: str) -> bool:
        """Whether ``precheck`` passing already authenticates the sender (GitLab's token)."""
        return source == "gitlab"

    async def github(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """``POST /webhooks/github``."""
        h = _lower(headers)
        if not self.github_secret:
            return self._reply("github", "not_configured", 503)
        if not verify_github_signature(self.github_secret, body, h.get("x-hub-signature-256")):
            return self._reply("github", "unauthorized", 401)
        event = h.get("x-github-event", "")
        if event == "ping":
            return self._reply("github", "ping", 200, {"status": "pong"})
        if event != "push":
            return self._reply("github", "ignored", 202)
        return await self._accept("github", h, body)

    async def gitlab(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """``POST /webhooks/gitlab``."""
        h = _lower(headers)
        if not self.gitlab_secret:
            return self._reply("gitlab", "not_configured", 503)
        if not verify_gitlab_token(self.gitlab_secret, h.get("x-gitlab-token")):
            return self._reply("gitlab", "unauthorized", 401)
        if h.get("x-gitlab-event") not in ("Push Hook", "Tag Push Hook"):
            return self._reply("gitlab", "ignored", 202)
        return await self._accept("gitlab", h, body)

    async def _accept(self, source: str, headers: dict[str, str], body: bytes) -> Reply:
        try:
            payload = _payload(headers, body)
            push = decode_code_push({"source": source, "headers": headers, "payload": payload})
        except InputError as exc:
            return self._reply(source, "bad_request", 400, {"error": str(exc)})
        # The authenticated content, not the unsigned delivery id, decides what is a replay.
        delivery = "sha256:" + hashlib.sha256(body).hexdigest()
        if not await self.dedupe.first_time(source, delivery):
            return self._reply(source, "duplicate", 202)
        try:
            await self.publish(push.repository.encode(), encode_code_push(source, headers, payload))
        except Exception as exc:  # the broker is down: say so, let the sender redeliver
            log.error("push_publish_failed", source=source, error=repr(exc))
            await self.dedupe.forget(source, delivery)
            return self._reply(source, "unavailable", 503)
        return self._reply(source, "accepted", 202)

    async def github_secret_scanning(self, headers: Mapping[str, str], body: bytes) -> Reply:
        """``POST /webhooks/github-secret-scanning``."""
        h, src = _lower(headers), "github-secret-scanning"
        if self.keys is None or self.responder is None:
            return self._reply(src, "not_configured", 503)
        try:
            ok = await self.keys.verify(
                body, h.get("github-public-key-identifier"), h.get("github-public-key-signature")
            )
        except FetchError as exc:
            log.warning("secret_scanning_keys_unavailable", error=str(exc))
            return self._reply(src, "unavailable", 503)
        if not ok:
            return self._reply(src, "unauthorized", 401)
        try:
            items = _token_items(body)
        except InputError as exc:
            return self._reply(src, "bad_request", 400, {"error": exc.reason})
        try:
            results = [await self._token_result(item) for item in items]
        except KeyStoreUnavailable:
            return self._reply(src, "unavailable", 503)
        return self._reply(src, "accepted", 200, results)

    async def _token_result(self, item: Mapping[str, str]) -> dict[str, str]:
        assert self.responder is not None
        token, ttype = item["token"], item["type"]
        prefix, _ = split_prefix(token)
        cand = TokenCandidate(
            rule_id=ttype[:64], kind="platform" if prefix else "third_party",
            key_hash=hash_key(token), redacted=redact_key(token), path=item.get("url"),
        )  # fmt: skip
        ctx = LeakContext(source="github-secret-scanning", url=item.get("url"))
        [finding] = await self.responder.respond([cand], ctx)
        ours = finding.verified and cand.kind == "platform"
        label = "true_positive" if ours else "false_positive"
        return {"token_hash": cand.key_hash, "token_type": ttype, "label": label}


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


FORM = "application/x-www-form-urlencoded"


def _payload(headers: Mapping[str, str], body: bytes) -> Any:
    """The webhook's JSON payload: the body, or its ``payload`` field when form-encoded."""
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw: bytes | str = body
    if ctype == FORM:
        try:
            fields = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError) as exc:
            raise InputError("form body is not valid", "bad_form") from exc
        values = fields.get("payload")
        if not values or len(values) != 1:
            raise InputError("form body has no single payload field", "bad_form")
        raw = values[0]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError("body is not JSON", "bad_json") from exc


def _token_items(body: bytes) -> list[dict[str, str]]:
    """The partner alert body: a JSON array of ``{token, type, url, source}``."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InputError("body is not JSON", "bad_json") from exc
    if not isinstance(doc, list) or len(doc) > MAX_SECRET_SCANNING_TOKENS:
        raise InputError("expected a JSON array of tokens", "bad_tokens")
    items: list[dict[str, str]] = []
    for item in doc:
        if not isinstance(item, dict):
            raise InputError("token entries must be objects", "bad_tokens")
        token, ttype = item.get("token"), item.get("type")
        if not isinstance(token, str) or not 0 < len(token) <= 1024 or not isinstance(ttype, str):
            raise InputError("token entries need a token and a type", "bad_tokens")
        entry = {"token": token, "type": ttype}
        for opt in ("url", "source"):
            if isinstance(item.get(opt), str):
                entry[opt] = item[opt][:2000]
        items.append(entry)
    return items

"""Webhook authenticity: GitHub HMAC signatures, GitLab tokens, GitHub secret-scanning ECDSA.

Every comparison is constant-time (``hmac.compare_digest``). A missing secret means "refuse",
never "accept unsigned"; a header that is not ASCII is simply a wrong signature (401).

The secret-scanning public keys (GitHub's ``/meta/public_keys/secret_scanning``) are fetched at
start and refreshed in the background (``refresh_loop``); requests are verified with the last
good keys, however old. A request never triggers a fetch unless it carries a well-formed
signature under a key id we do not know (a rotation), and then at most once per
``min_refresh_s`` whoever asks. Nothing is fetched for unsigned or malformed requests.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import httpx
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from core.errors import FetchError, InputError

log = structlog.get_logger("keywatch.signatures")

SIGNATURE_PREFIX = "sha256="


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_github_signature(secret: str | None, body: bytes, header: str | None) -> bool:
    """True only when a secret is configured and ``header`` is the body's HMAC-SHA256."""
    if not secret or not header or not header.isascii() or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(github_signature(secret, body).encode(), header.encode())


def verify_gitlab_token(secret: str | None, header: str | None) -> bool:
    """True only when a secret is configured and ``X-Gitlab-Token`` equals it."""
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret.encode(), header.encode("utf-8", "surrogateescape"))


def verify_ecdsa(public_key: ec.EllipticCurvePublicKey, body: bytes, signature_b64: str) -> bool:
    """Verify a base64 DER ECDSA-SHA256 signature of ``body``."""
    der = der_signature(signature_b64)
    if der is None:
        return False
    try:
        public_key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def der_signature(signature_b64: str) -> bytes | None:
    """The DER ECDSA signature in a base64 header, or None when it is not one."""
    if not signature_b64.isascii() or len(signature_b64) > 200:
        return None
    try:
        der = base64.b64decode(signature_b64, validate=True)
        decode_dss_signature(der)
    except (binascii.Error, ValueError):
        return None
    return der


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    """Parse a PEM public key; raises InputError unless it is an EC (P-256) key."""
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise InputError(f"bad public key: {exc}", reason="bad_public_key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InputError("public key is not an EC key", reason="bad_public_key")
    return key


class SecretScanningKeys:
    """GitHub's secret-scanning public keys by identifier: last good set, refreshed in the
    background, fetched on a request only for an unknown key id and at most once per
    ``min_refresh_s``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        ttl_s: float = 3600.0,
        min_refresh_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ttl, self._min_refresh = ttl_s, min_refresh_s
        self._transport = transport
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at = float("-inf")  # last success
        self._attempted_at = float("-inf")  # last attempt, success or not: the rate limit
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def refresh(self, *, force: bool = False) -> None:
        """Fetch the keys unless one was attempted within ``min_refresh_s`` (``force``: ttl
        check skipped); a failure keeps the last good keys and raises ``FetchError``."""
        async with self._lock:
            now = time.monotonic()
            if now - self._attempted_at < self._min_refresh:
                return
            if not force and now - self._fetched_at < self._ttl:
                return
            self._attempted_at = now
            self.fetches += 1
            keys = await self._fetch()
            if keys:
                self._keys, self._fetched_at = keys, time.monotonic()

    async def refresh_loop(self) -> None:
        """At start and then every ``min_refresh_s``: refresh when stale (background task)."""
        while True:
            try:
                await self.refresh()
            except FetchError as exc:
                log.warning("secret_scanning_keys_refresh_failed", error=str(exc)[:300])
            await asyncio.sleep(max(self._min_refresh, 1.0))

    async def get(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The key with ``key_id`` from the last good set; an unknown id asks for one refresh
        (rate-limited). Raises ``FetchError`` only when no key was ever fetched."""
        if key_id not in self._keys:
            try:
                await self.refresh(force=True)
            except FetchError:
                if not self._keys:
                    raise
        return self._keys.get(key_id)

    async def verify(self, body: bytes, key_id: str | None, signature: str | None) -> bool:
        """Whether ``signature`` is a valid signature of ``body`` by key ``key_id``."""
        if not key_id or not signature or len(key_id) > 200 or not key_id.isascii():
            return False
        if der_signature(signature) is None:  # unsigned or malformed: never a fetch
            return False
        key = await self.get(key_id)
        return key is not None and verify_ecdsa(key, body, signature)

    async def _fetch(self) -> dict[str, ec.EllipticCurvePublicKey]:
        try:
            async with httpx.AsyncClient(
                timeout=10.0, follow_redirects=False, transport=self._transport
            ) as client:
                resp = await client.get(self.url, headers=self._headers)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            raise FetchError(f"secret-scanning keys unavailable: {exc!r}") from exc
        if resp.status_code != 200:
            raise FetchError(f"secret-scanning keys: HTTP {resp.status_code}")
        try:
            return parse_public_keys(resp.json())
        except ValueError as exc:
            raise FetchError(f"secret-scanning keys: bad JSON: {exc}") from exc


def parse_public_keys(doc: Any) -> dict[str, ec.EllipticCurvePublicKey]:
    """``{"public_keys": [{"key_identifier", "key", "is_current"}]}`` -> keys by identifier."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("public_keys"), list):
        raise ValueError("expected {'public_keys': [...]}")
    out: dict[str, ec.EllipticCurvePublicKey] = {}
    for item in doc["public_keys"]:
        if not isinstance(item, Mapping):
            continue
        key_id, pem = item.get("key_identifier"), item.get("key")
        if isinstance(key_id, str) and isinstance(pem, str):
            try:
                out[key_id] = load_public_key(pem)
            except InputError:
                continue
    return out

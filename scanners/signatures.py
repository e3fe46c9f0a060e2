"""Webhook authenticity: GitHub HMAC signatures, GitLab tokens, GitHub secret-scanning ECDSA.

Every comparison is constant-time (``hmac.compare_digest``). A missing secret means "refuse",
never "accept unsigned". The secret-scanning public keys are fetched from the configured URL
(GitHub's ``/meta/public_keys/secret_scanning``) and cached; an unknown key id forces one refresh.
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from worker.errors import FetchError, InputError

SIGNATURE_PREFIX = "sha256="


def github_signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_github_signature(secret: str | None, body: bytes, header: str | None) -> bool:
    """True only when a secret is configured and ``header`` is the body's HMAC-SHA256."""
    if not secret or not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    return hmac.compare_digest(github_signature(secret, body).encode(), header.encode())


def verify_gitlab_token(secret: str | None, header: str | None) -> bool:
    """True only when a secret is configured and ``X-Gitlab-Token`` equals it."""
    if not secret or header is None:
        return False
    return hmac.compare_digest(secret.encode(), header.encode("utf-8", "replace"))


def verify_ecdsa(public_key: ec.EllipticCurvePublicKey, body: bytes, signature_b64: str) -> bool:
    """Verify a base64 DER ECDSA-SHA256 signature of ``body``."""
    try:
        der = base64.b64decode(signature_b64, validate=True)
        public_key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


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
    """GitHub's secret-scanning public keys by identifier, fetched on demand and cached."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        ttl_s: float = 3600.0,
        min_refresh_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ttl, self._min_refresh = ttl_s, min_refresh_s
        self._transport = transport
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        """The key with ``key_id``; refreshes when stale or unknown (rate-limited)."""
        now = time.monotonic()
        stale = now - self._fetched_at > self._ttl
        unknown = key_id not in self._keys and now - self._fetched_at > self._min_refresh
        if stale or unknown:
            async with self._lock:
                if time.monotonic() - self._fetched_at > min(self._min_refresh, self._ttl):
                    self._keys = await self._fetch()
                    self._fetched_at = time.monotonic()
        return self._keys.get(key_id)

    async def verify(self, body: bytes, key_id: str | None, signature: str | None) -> bool:
        """Whether ``signature`` is a valid signature of ``body`` by key ``key_id``."""
        if not key_id or not signature:
            return False
        key = await self.get(key_id)
        return key is not None and verify_ecdsa(key, body, signature)

    async def _fetch(self) -> dict[str, ec.EllipticCurvePublicKey]:
        try:
            async with httpx.AsyncClient(
                timeout=10.0, follow_redirects=False, transport=self._transport
            ) as client:
                resp = await client.get(self.url, headers=self._headers)
        except httpx.HTTPError as exc:
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

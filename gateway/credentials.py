"""Reading the caller's key, client IP and a key-free path from a request's parts.

Credentials in the contract's order: ``Authorization: Bearer K``, ``Authorization: ApiKey K``,
``Authorization: Basic`` (the key as the user name), ``X-API-Key: K``, then the query
parameters ``api_key``, ``apiKey``, ``key`` (accepted, but warned and reported). Headers are
``(lower-case name, value)`` pairs as ASGI gives them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from worker.ingest.ips import TrustedProxies, forwarded_client, normalise
from worker.ingest.keys import split_path

QUERY_PARAMS: Final = ("api_key", "apiKey", "key")
MAX_KEY: Final = 512  # longer values are not keys; never hash megabytes


@dataclass(frozen=True, slots=True)
class Credential:
    """A presented key and where it came from; never logged, never repr'd whole."""

    key: str
    source: str  # bearer, apikey, basic, header, query

    @property
    def in_query(self) -> bool:
        """Whether the key travelled in the query string (a finding in itself)."""
        return self.source == "query"

    def __repr__(self) -> str:
        return f"Credential(source={self.source!r})"


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


def from_authorization(value: str) -> Credential | None:
    """Bearer, ApiKey or Basic (key as the user name) from an Authorization value."""
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    low = scheme.lower()
    if low == "bearer" and rest:
        return Credential(rest, "bearer")
    if low == "apikey" and rest:
        return Credential(rest, "apikey")
    if low == "basic" and rest and len(rest) <= MAX_KEY * 2:
        try:
            user = base64.b64decode(rest, validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return Credential(user, "basic") if user else None
    return None


def extract(headers: Iterable[tuple[bytes, bytes]], query: str) -> Credential | None:
    """The caller's key in the contract's order, or None when there is none."""
    headers = list(headers)
    auth = _header(headers, b"authorization")
    found = from_authorization(auth) if auth else None
    if found is None:
        header_key = _header(headers, b"x-api-key")
        if header_key and header_key.strip():
            found = Credential(header_key.strip(), "header")
    if found is None and query:
        params = dict(parse_qsl(query, keep_blank_values=False))
        for name in QUERY_PARAMS:
            if params.get(name):
                found = Credential(params[name], "query")
                break
    if found is not None and len(found.key) > MAX_KEY:
        return Credential("", found.source)  # refused as invalid without hashing it
    return found


def scrubbed_path(path: str, query: str) -> str:
    """The request path for the event: any key in it or in the query string redacted."""
    clean, _ = split_path(f"{path}?{query}" if query else path)
    return clean


def client_ip(peer: str | None, xff: str | None, trusted: TrustedProxies) -> str:
    """The client's IP: the peer, or the right-most ``X-Forwarded-For`` entry not added by a
    trusted proxy (``worker.ingest.ips.forwarded_client``, the worker's one reading of it).

    Never the left-most entry: a client can write anything there, only the hops our own
    proxies appended are facts. A peer that is not an IP address (a Unix socket, a test
    client) is never a trusted proxy.
    """
    peer_ip = normalise(peer) if peer else None
    if peer_ip is None:
        return peer or "0.0.0.0"  # noqa: S104 - a placeholder address, nothing binds to it
    return forwarded_client(peer_ip, xff, trusted) or peer_ip

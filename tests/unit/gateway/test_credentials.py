"""Credential extraction order, client IP through trusted proxies, key-free paths."""

from __future__ import annotations

import base64

import pytest

from core.keyformat import generate_key
from gateway.credentials import client_ip, extract, scrubbed_path
from worker.ingest.ips import parse_trusted

KEY = generate_key().secret
OTHER = generate_key().secret


def basic(user: str, password: str = "") -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


@pytest.mark.parametrize(
    "headers, query, source, key",
    [
        ([(b"authorization", f"Bearer {KEY}".encode())], "", "bearer", KEY),
        ([(b"authorization", f"bearer  {KEY}".encode())], "", "bearer", KEY),
        ([(b"authorization", f"ApiKey {KEY}".encode())], "", "apikey", KEY),
        ([(b"authorization", basic(KEY))], "", "basic", KEY),
        ([(b"x-api-key", KEY.encode())], "", "header", KEY),
        ([], f"api_key={KEY}", "query", KEY),
        ([], f"apiKey={KEY}&x=1", "query", KEY),
        ([], f"x=1&key={KEY}", "query", KEY),
        # order: Authorization beats X-API-Key beats the query string
        ([(b"x-api-key", OTHER.encode()), (b"authorization", f"Bearer {KEY}".encode())],
         f"api_key={OTHER}", "bearer", KEY),
        ([(b"x-api-key", KEY.encode())], f"api_key={OTHER}", "header", KEY),
        # an Authorization scheme we do not read falls through to X-API-Key
        ([(b"authorization", b"Digest abc"), (b"x-api-key", KEY.encode())], "", "header", KEY),
        ([], f"api_key=&apiKey={KEY}", "query", KEY),
    ],
    ids=["bearer", "bearer-lowercase", "apikey", "basic", "x-api-key", "query-api_key",
         "query-apiKey", "query-key", "bearer-first", "header-before-query",
         "unknown-scheme-falls-through", "empty-query-value-skipped"],
)  # fmt: skip
def test_extraction_order(
    headers: list[tuple[bytes, bytes]], query: str, source: str, key: str
) -> None:
    cred = extract(headers, query)
    assert cred is not None
    assert (cred.source, cred.key) == (source, key)
    assert cred.in_query == (source == "query")
    assert KEY not in repr(cred)


@pytest.mark.parametrize(
    "headers, query",
    [([], ""), ([], "apikey=x"), ([(b"authorization", b"Bearer ")], ""),
     ([(b"authorization", b"Basic !!!")], ""), ([(b"authorization", basic(""))], "")],
)  # fmt: skip
def test_no_credential(headers: list[tuple[bytes, bytes]], query: str) -> None:
    assert extract(headers, query) is None


def test_oversized_key_is_not_kept() -> None:
    cred = extract([(b"x-api-key", b"a" * 5000)], "")
    assert cred is not None and cred.key == ""


@pytest.mark.parametrize(
    "trusted, peer, xff, expected",
    [
        ("0", "10.0.0.5", "198.51.100.9", "10.0.0.5"),  # nothing trusted: the peer
        # the default, as for the worker: private and loopback peers are proxies
        # (documentation ranges such as 198.51.100.0/24 are not public: real addresses here)
        ("private", "10.0.0.5", "6.6.6.6, 9.9.9.9", "9.9.9.9"),
        ("private", "127.0.0.1", "9.9.9.9, 10.0.0.4", "9.9.9.9"),
        ("private", "8.8.4.4", "9.9.9.9", "8.8.4.4"),  # a public peer is the client itself
        ("private", "testclient", "9.9.9.9", "testclient"),  # not an address: no proxy
        ("1", "10.0.0.5", "6.6.6.6, 198.51.100.9", "198.51.100.9"),  # not the left-most
        ("2", "10.0.0.5", "6.6.6.6, 198.51.100.9, 10.0.0.4", "198.51.100.9"),
        ("3", "10.0.0.5", "198.51.100.9", "198.51.100.9"),  # fewer hops than trusted
        ("10.0.0.0/8", "10.0.0.5", "6.6.6.6, 198.51.100.9, 10.0.0.4", "198.51.100.9"),
        ("10.0.0.0/8", "203.0.113.1", "198.51.100.9", "203.0.113.1"),  # peer untrusted
        ("10.0.0.0/8", "10.0.0.5", "10.1.1.1, 10.0.0.4", "10.1.1.1"),  # all trusted
        ("1", "10.0.0.5", "not-an-ip", "10.0.0.5"),
        ("1", "10.0.0.5", "198.51.100.9:4711", "198.51.100.9"),
        ("1", "10.0.0.5", "2001:db8::1", "2001:db8::1"),
        ("1", "10.0.0.5", "", "10.0.0.5"),
    ],
)
def test_client_ip(trusted: str, peer: str, xff: str, expected: str) -> None:
    assert client_ip(peer, xff, parse_trusted(trusted)) == expected


@pytest.mark.parametrize(
    "path, query",
    [("/v1/users", f"api_key={KEY}&a=1"), (f"/v1/keys/{KEY}", ""), ("/v1/x", f"key={KEY}")],
    ids=["query-api_key", "path-segment", "query-key"],
)
def test_paths_never_carry_a_key(path: str, query: str) -> None:
    clean = scrubbed_path(path, query)
    assert KEY not in clean
    assert clean.startswith(path.split("sk_")[0])

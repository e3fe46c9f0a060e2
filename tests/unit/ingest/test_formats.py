"""Per-format tables: real-looking gateway output in, normalised records out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.keyformat import hash_key
from detectors.model import AccessEvent
from worker.ingest import parse_message

from .samples import (
    AWS_FLAT,
    AWS_NESTED,
    ENVOY,
    KEY,
    KONG,
    NATIVE,
    T_S,
    TYK,
    basic,
    variant,
)

H = hash_key(KEY)

CASES: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = [
    (
        "native",
        NATIVE,
        "native",
        {
            "ts": T_S,
            "ip": "203.0.113.7",
            "key_id": "9f2a1c3e",
            "key_hash": None,
            "method": "GET",
            "path": "/v1/users",
            "status": 200,
            "user_agent": "acme-sdk/2.3.1",
            "request_id": "req-1",
            "gateway": "gw-eu-1",
        },
    ),
    (
        "native epoch ms + hash",
        variant(NATIVE, ("ts", 1_795_316_645_123), ("key_id", ...), ("key_hash", H.upper())),
        "native",
        {"ts": T_S, "key_id": None, "key_hash": H},
    ),
    (
        "native ipv6 + account",
        variant(NATIVE, ("ip", "2001:DB8::0:1"), ("account_id", "acme")),
        "native",
        {"ip": "2001:db8::1", "account_id": "acme"},
    ),
    (
        "native ipv4-mapped",
        variant(NATIVE, ("ip", "::ffff:203.0.113.9")),
        "native",
        {"ip": "203.0.113.9"},
    ),
    (
        "native key in query",
        variant(NATIVE, ("key_id", ...), ("path", f"/v1/u?api_key={KEY}&a=1")),
        "native",
        {"key_id": None, "key_hash": H, "key_in_query": True, "path": "/v1/u?api_key=REDACTED&a=1"},
    ),
    (
        "kong",
        KONG,
        "kong",
        {
            "ts": T_S,
            "ip": "198.51.100.23",
            "key_id": "4fd2a1c8-5e0b-4c61-9a3e-7f3b2d1c0a99",
            "key_hash": None,
            "method": "POST",
            "path": "/v1/orders?page=2",
            "status": 201,
            "user_agent": "curl/8.5.0",
            "request_id": "b4e8a4b2c1d44a5f",
            "gateway": "orders-svc",
            "account_id": "acme",
        },
    ),
    (
        "kong bearer",
        variant(KONG, ("request.headers.authorization", f"Bearer {KEY}")),
        "kong",
        {"key_hash": H, "key_in_query": False},
    ),
    (
        "kong apikey scheme",
        variant(
            KONG, ("request.headers.authorization", f"ApiKey {KEY}"), ("authenticated_entity", ...)
        ),
        "kong",
        {"key_id": None, "key_hash": H},
    ),
    (
        "kong basic user",
        variant(KONG, ("request.headers.authorization", basic(KEY))),
        "kong",
        {"key_hash": H},
    ),
    (
        "kong x-api-key list",
        variant(KONG, ("request.headers.x-api-key", [KEY, "other"])),
        "kong",
        {"key_hash": H},
    ),
    (
        "kong key-auth apikey",
        variant(KONG, ("request.headers.apikey", KEY)),
        "kong",
        {"key_hash": H},
    ),
    (
        "kong query apiKey",
        variant(
            KONG, ("request.uri", f"/v1/o?apiKey={KEY}"), ("request.querystring", {"apiKey": KEY})
        ),
        "kong",
        {"key_hash": H, "key_in_query": True, "path": "/v1/o?apiKey=REDACTED"},
    ),
    (
        "kong querystring only",
        variant(
            KONG,
            ("request.uri", ...),
            ("request.url", ...),
            ("request.querystring", {"access_token": KEY}),
        ),
        "kong",
        {"key_hash": H, "key_in_query": True, "path": ""},
    ),
    (
        "kong url fallback",
        variant(KONG, ("request.uri", ...)),
        "kong",
        {"path": "/v1/orders?page=2"},
    ),
    ("kong request.id", variant(KONG, ("request.id", "rid-35")), "kong", {"request_id": "rid-35"}),
    (
        "envoy private peer uses XFF",
        ENVOY,
        "envoy",
        {
            "ts": T_S,
            "ip": "81.2.69.160",
            "key_id": "k-envoy-1",
            "status": 200,
            "gateway": "items",
            "request_id": ENVOY["request_id"],
        },
    ),
    (
        "envoy public peer wins",
        variant(ENVOY, ("downstream_remote_address", "93.184.216.34:443")),
        "envoy",
        {"ip": "93.184.216.34"},
    ),
    (
        "envoy v6 peer",
        variant(
            ENVOY, ("downstream_remote_address", "[2001:db8::7]:443"), ("x_forwarded_for", ...)
        ),
        "envoy",
        {"ip": "2001:db8::7"},
    ),
    (
        "envoy header key",
        variant(ENVOY, ("key_id", ...), ("x_api_key", KEY)),
        "envoy",
        {"key_id": None, "key_hash": H},
    ),
    (
        "envoy authorization",
        variant(ENVOY, ("key_id", ...), ("authorization", f"Bearer {KEY}")),
        "envoy",
        {"key_hash": H},
    ),
    (
        "aws flat",
        AWS_FLAT,
        "aws",
        {
            "ts": 1_795_316_645.0,
            "ip": "192.0.2.10",
            "key_id": "x1y2z3abcd",
            "method": "GET",
            "path": "/prod/pets/42",
            "status": 200,
            "request_id": AWS_FLAT["requestId"],
            "gateway": "aws",
        },
    ),
    (
        "aws nested",
        AWS_NESTED,
        "aws",
        {
            "ts": T_S,
            "ip": "2001:db8:85a3::8a2e:370:7334",
            "key_id": "k9q8r7",
            "status": 201,
            "user_agent": "ua",
            "gateway": "api.example.com",
        },
    ),
    (
        "aws dotted",
        {
            "requestId": "r",
            "requestTimeEpoch": str(1_795_316_645_123),
            "httpMethod": "GET",
            "identity.sourceIp": "192.0.2.1",
            "identity.apiKeyId": "kd",
        },
        "aws",
        {"ip": "192.0.2.1", "key_id": "kd", "ts": T_S},
    ),
    (
        "aws raw apiKey",
        variant(AWS_NESTED, ("identity.apiKey", KEY), ("identity.apiKeyId", "-")),
        "aws",
        {"key_id": None, "key_hash": H},
    ),
    (
        "tyk",
        TYK,
        "tyk",
        {
            "ts": 1_795_316_645.123456,
            "ip": "203.0.113.99",
            "key_id": "5e9d9544a1dcd60001d0ed20a1b2c3d4",
            "path": "/widgets/v1/widgets?limit=5",
            "gateway": "Widgets",
            "account_id": None,
        },
    ),
    (
        "tyk raw key as api_key",
        variant(TYK, ("api_key", KEY)),
        "tyk",
        {"key_id": None, "key_hash": H},
    ),
]


@pytest.mark.parametrize(
    ("sample", "fmt", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_format_table(sample: dict[str, Any], fmt: str, expected: dict[str, Any]) -> None:
    for forced in ("auto", fmt):
        result = parse_message(orjson.dumps(sample), forced)
        assert result.rejects == []
        assert result.fmt == fmt
        (event,) = result.events
        for name, value in expected.items():
            got = getattr(event, name)
            if name == "ts":
                assert got == pytest.approx(value, abs=1e-6)
            else:
                assert got == value, name
        assert event.fmt == fmt


def test_kong_batched_array_with_one_bad_element() -> None:
    batch = [KONG, variant(KONG, ("client_ip", "not-an-ip")), variant(KONG, ("client_ip", "::1"))]
    result = parse_message(orjson.dumps(batch))
    assert result.fmt == "kong"
    assert [e.ip for e in result.events] == ["198.51.100.23", "::1"]
    assert [(r.reason, r.index) for r in result.rejects] == [("invalid_ip", 1)]


REJECTS: list[tuple[str, bytes, str, list[tuple[str, int | None]]]] = [
    ("not json", b"{nope", "auto", [("invalid_json", None)]),
    ("bad utf-8", b'{"ts": "\xff\xfe"}', "auto", [("invalid_utf8", None)]),
    ("scalar", b"42", "auto", [("not_an_object", None)]),
    ("unknown shape", b'{"hello": 1}', "auto", [("unknown_format", None)]),
    ("array of scalars", b"[1, 2]", "auto", [("not_an_object", 0), ("not_an_object", 1)]),
    ("no ip", orjson.dumps(variant(NATIVE, ("ip", ...))), "native", [("missing_ip", None)]),
    ("bad ip", orjson.dumps(variant(NATIVE, ("ip", "999.1.1.1"))), "auto", [("invalid_ip", None)]),
    ("ip wrong type", orjson.dumps(variant(NATIVE, ("ip", [1]))), "auto", [("invalid_ip", None)]),
    ("no key", orjson.dumps(variant(NATIVE, ("key_id", ...))), "auto", [("missing_key", None)]),
    (
        "key id dict",
        orjson.dumps(variant(NATIVE, ("key_id", {}))),
        "auto",
        [("invalid_key_id", None)],
    ),
    (
        "bad hash",
        orjson.dumps(variant(NATIVE, ("key_hash", "zz"))),
        "auto",
        [("invalid_key_hash", None)],
    ),
    (
        "bad ts",
        orjson.dumps(variant(NATIVE, ("ts", "yesterday"))),
        "auto",
        [("invalid_timestamp", None)],
    ),
    (
        "ts 1999",
        orjson.dumps(variant(NATIVE, ("ts", "1999-12-31T23:59:59Z"))),
        "auto",
        [("timestamp_out_of_range", None)],
    ),
    (
        "ts 2100",
        orjson.dumps(variant(NATIVE, ("ts", 4_102_444_800))),
        "auto",
        [("timestamp_out_of_range", None)],
    ),
    (
        "negative ts",
        orjson.dumps(variant(NATIVE, ("ts", -5))),
        "auto",
        [("invalid_timestamp", None)],
    ),
    (
        "kong no entity no key",
        orjson.dumps(variant(KONG, ("authenticated_entity", ...))),
        "auto",
        [("missing_key", None)],
    ),
    ("kong forced on native", orjson.dumps(NATIVE), "kong", [("missing_timestamp", None)]),
    (
        "aws placeholder ip",
        orjson.dumps(variant(AWS_FLAT, ("ip", "-"))),
        "auto",
        [("missing_ip", None)],
    ),
]


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"), [c[1:] for c in REJECTS], ids=[c[0] for c in REJECTS]
)
def test_rejects(raw: bytes, fmt: str, expected: list[tuple[str, int | None]]) -> None:
    result = parse_message(raw, fmt)
    assert result.events == []
    assert [(r.reason, r.index) for r in result.rejects] == expected
    assert all(r.detail for r in result.rejects)


def test_too_large_is_rejected_before_decoding() -> None:
    body = orjson.dumps([NATIVE] * 50)
    result = parse_message(body, max_bytes=len(body) - 1)
    assert [r.reason for r in result.rejects] == ["too_large"]
    assert len(parse_message(body, max_bytes=len(body)).events) == 50


def test_unknown_forced_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        parse_message(b"{}", "nginx")


def test_format_detected_per_message() -> None:
    assert parse_message(orjson.dumps(TYK)).fmt == "tyk"
    assert parse_message(orjson.dumps([NATIVE])).fmt == "native"
    assert parse_message(b"[]").events == []


def test_to_event() -> None:
    (raw,) = parse_message(orjson.dumps(variant(NATIVE, ("path", f"/x?key={KEY}")))).events
    event = raw.to_event("kid-1", "acct")
    assert event == AccessEvent(
        ts=raw.ts,
        key_id="kid-1",
        ip="203.0.113.7",
        method="GET",
        path="/x?key=REDACTED",
        status=200,
        user_agent="acme-sdk/2.3.1",
        request_id="req-1",
        gateway="gw-eu-1",
        account_id="acct",
        key_in_query=True,
        fmt="native",
    )
    assert raw.to_event("kid-1").account_id is None

"""No raw key survives parsing; timestamps, IPs and query scrubbing in detail."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson
import pytest

from core.keyformat import hash_key
from worker.ingest import parse_message
from worker.ingest.ips import (
    TrustedProxies,
    configure,
    forwarded_client,
    normalise,
    parse_trusted,
)
from worker.ingest.keys import key_from_authorization, split_path
from worker.ingest.model import Rejected
from worker.ingest.timestamps import parse_ts

from .samples import AWS_NESTED, ENVOY, KEY, KEY2, KONG, NATIVE, T_S, TYK, basic, variant

PLANTED: list[dict[str, Any]] = [
    variant(NATIVE, ("path", f"/v1/x/{KEY}?api_key={KEY2}")),
    variant(NATIVE, ("key_id", KEY)),
    variant(NATIVE, ("key_id", KEY), ("ip", "bogus")),  # rejected: detail must not echo it
    variant(
        KONG,
        ("request.headers.authorization", basic("", KEY)),
        ("request.uri", f"/o?key={KEY2}&b=2"),
        ("request.querystring", {"key": KEY2}),
    ),
    variant(KONG, ("request.headers.x-api-key", KEY), ("started_at", KEY2)),
    variant(ENVOY, ("authorization", f"Token {KEY}"), ("path", f"/p?access_token={KEY2}")),
    variant(AWS_NESTED, ("identity.apiKey", KEY), ("path", f"/p?apikey={KEY2}")),
    variant(TYK, ("api_key", KEY), ("raw_path", f"/w?api%5Fkey={KEY2}")),
    variant(TYK, ("api_key", KEY), ("ip_address", KEY2)),
    variant(ENVOY, ("gateway", f"Bearer {KEY}"), ("user_agent", KEY2), ("request_id", KEY)),
    variant(NATIVE, ("account_id", KEY), ("method", KEY2)),
]


@pytest.mark.parametrize("event", PLANTED)
def test_no_raw_key_in_records_or_rejects(event: dict[str, Any]) -> None:
    result = parse_message(orjson.dumps([event, event]))
    dumped = repr(result) + orjson.dumps([asdict(e) for e in result.events]).decode()
    dumped += orjson.dumps([r.to_dict() for r in result.rejects]).decode()
    assert KEY not in dumped and KEY2 not in dumped
    assert KEY[:20] not in dumped and KEY2[:20] not in dumped
    for e in result.events:  # where a planted key was an identity, only its hash is kept
        assert e.key_hash in (None, hash_key(KEY), hash_key(KEY2))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-22T03:04:05.123Z", T_S),
        ("2026-11-22T03:04:05Z", 1_795_316_645.0),
        ("2026-11-22T04:04:05.123+01:00", T_S),
        ("2026-11-22T03:04:05.123456789Z", 1_795_316_645.123456),
        ("2026-11-22T03:04:05.123", T_S),  # naive: UTC
        ("2026-11-22 03:04:05.123Z", T_S),
        (1_795_316_645, 1_795_316_645.0),
        (1_795_316_645.123, T_S),
        (1_795_316_645_123, T_S),
        (1_795_316_645_123_000, T_S),
        (1_795_316_645_123_000_000, T_S),
        ("1795316645123", T_S),
        ("1795316645.123", T_S),
        ("22/Nov/2026:03:04:05 +0000", 1_795_316_645.0),
    ],
)
def test_timestamps(value: Any, expected: float) -> None:
    assert parse_ts(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "missing_timestamp"),
        (True, "invalid_timestamp"),
        ([1], "invalid_timestamp"),
        (float("nan"), "invalid_timestamp"),
        (float("inf"), "invalid_timestamp"),
        (-1, "invalid_timestamp"),
        (0, "timestamp_out_of_range"),
        (10**30, "timestamp_out_of_range"),
        ("2026-11-22T03:04:05.12xZ", "invalid_timestamp"),
        ("1999-12-31T23:59:59.999Z", "timestamp_out_of_range"),
        ("9999-12-31T23:59:59+14:00", "timestamp_out_of_range"),
        ("0001-01-01T00:00:00-14:00", "timestamp_out_of_range"),
        ("", "invalid_timestamp"),
        ("x" * 100, "invalid_timestamp"),
        ("31/Feb/2026:00:00:00 +0000", "invalid_timestamp"),
    ],
)
def test_bad_timestamps(value: Any, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_ts(value)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("203.0.113.7:8080", "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:0DB8:0000::1", "2001:db8::1"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("256.1.1.1", None),
        ("", None),
        ("[::1", None),
        ("1" * 200, None),
    ],
)
def test_ip_normalise(text: str, expected: str | None) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("spec", "peer", "xff", "expected"),
    [
        ("", "10.0.0.5", "81.2.69.160", "81.2.69.160"),
        # a forged left-most entry: the right-most untrusted entry is what our LB saw
        ("", "10.0.0.5", "6.6.6.6, 81.2.69.160", "81.2.69.160"),
        ("", "10.0.0.5", "10.0.0.1, 81.2.69.160, 93.184.216.34", "93.184.216.34"),
        ("", "10.0.0.5", "81.2.69.160, 10.1.2.3", "81.2.69.160"),
        ("", "10.0.0.5", "garbage, 2a00:1450:4001:82b::200e", "2a00:1450:4001:82b::200e"),
        ("", "10.0.0.5", "81.2.69.160, garbage", "10.0.0.5"),
        ("", "10.0.0.5", "10.0.0.1, 192.168.1.1", "10.0.0.1"),
        ("", "10.0.0.5", "", "10.0.0.5"),
        ("", "93.184.216.34", "6.6.6.6", "93.184.216.34"),  # a public peer is the client
        ("", None, "6.6.6.6, 81.2.69.160", "81.2.69.160"),
        ("1", "10.0.0.5", "6.6.6.6, 81.2.69.160", "81.2.69.160"),
        ("2", "10.0.0.5", "6.6.6.6, 81.2.69.160, 10.0.0.9", "81.2.69.160"),
        ("2", "10.0.0.5", "81.2.69.160", "81.2.69.160"),
        ("0", "93.184.216.34", "6.6.6.6", "93.184.216.34"),
        ("0", "10.0.0.5", "6.6.6.6", "10.0.0.5"),
        ("203.0.113.0/24", "203.0.113.9", "6.6.6.6, 81.2.69.160", "81.2.69.160"),
        ("203.0.113.0/24", "10.0.0.5", "81.2.69.160", "10.0.0.5"),  # not our proxy
    ],
)
def test_forwarded_client(spec: str, peer: str | None, xff: str, expected: str | None) -> None:
    configure(parse_trusted(spec))
    try:
        assert forwarded_client(peer, xff) == expected
    finally:
        configure(TrustedProxies())


def test_trusted_proxies_setting_is_validated() -> None:
    from core.errors import ConfigError
    from worker.settings import Settings

    assert Settings.from_env({"KEYWATCH_TRUSTED_PROXIES": "2"}).trusted_proxies.hops == 2
    with pytest.raises(ConfigError, match="KEYWATCH_TRUSTED_PROXIES"):
        Settings.from_env({"KEYWATCH_TRUSTED_PROXIES": "lots"})


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"Bearer {KEY}", KEY),
        (f"bearer   {KEY}", KEY),
        (f"ApiKey {KEY}", KEY),
        (basic(KEY), KEY),
        (basic(KEY, "secret"), KEY),
        (basic("", KEY), KEY),
        ("Basic !!!notbase64", None),
        ("Digest username=x", None),
        ("REDACTED", None),
        ("Bearer ", None),
    ],
)
def test_authorization(header: str, expected: str | None) -> None:
    assert key_from_authorization(header) == expected


@pytest.mark.parametrize(
    ("path", "clean", "found"),
    [
        ("/a/b", "/a/b", None),
        ("/a?x=1&key=K1", "/a?x=1&key=REDACTED", "K1"),
        ("/a?API_KEY=K2", "/a?API_KEY=REDACTED", "K2"),
        ("/a?api%5Fkey=K%2B3", "/a?api%5Fkey=REDACTED", "K+3"),
        ("/a?monkey=1&keys=2", "/a?monkey=1&keys=2", None),
        ("/a?key=", "/a?key=", None),
        (f"/keys/{KEY}", "/keys/sk_live_4f9a…", None),
    ],
)
def test_split_path(path: str, clean: str, found: str | None) -> None:
    assert split_path(path) == (clean, found)

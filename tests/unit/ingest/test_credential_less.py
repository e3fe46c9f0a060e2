"""A request without any credential: still ``missing_key``, and the reject keeps what parsed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from worker.ingest import parse_message
from worker.ingest.model import RawAccess

from .samples import AWS_FLAT, AWS_NESTED, ENVOY, KONG, NATIVE, T_S, TYK, variant

# keywatch gateway's event for a request without a credential (gateway.core.event, "missing")
GATEWAY_MISSING: dict[str, Any] = {
    "ts": 1_795_316_645_123, "ip": "203.0.113.7", "method": "GET", "path": "/v1/users",
    "status": 401, "user_agent": "curl/8.5.0", "request_id": "r-1", "gateway": "keywatch-gateway",
    "auth": "missing", "key_in_query": False,
}  # fmt: skip

# (name, message, detail of the reject, what the record keeps:
#  ts, ip, status, auth, path, method, user agent, gateway, format)
CASES: list[tuple[str, dict[str, Any], str, tuple[Any, ...]]] = [
    ("keywatch gateway", GATEWAY_MISSING, "no key_id, key hash or raw key",
     (T_S, "203.0.113.7", 401, "missing", "/v1/users", "GET", "curl/8.5.0", "keywatch-gateway",
      "native")),
    ("native", variant(NATIVE, ("key_id", ...), ("status", 403)), "no key_id, key hash or raw key",
     (T_S, "203.0.113.7", 403, "", "/v1/users", "GET", "acme-sdk/2.3.1", "gw-eu-1", "native")),
    ("native placeholder id", variant(NATIVE, ("key_id", "-"), ("status", 401)),
     "no key_id, key hash or raw key",
     (T_S, "203.0.113.7", 401, "", "/v1/users", "GET", "acme-sdk/2.3.1", "gw-eu-1", "native")),
    ("kong", variant(KONG, ("authenticated_entity", ...), ("response.status", 401)),
     "no authenticated_entity.id, key hash or raw key",
     (T_S, "198.51.100.23", 401, "", "/v1/orders?page=2", "POST", "curl/8.5.0", "orders-svc",
      "kong")),
    ("envoy", variant(ENVOY, ("key_id", ...), ("response_code", 401)),
     "no key_id, key hash or raw key",
     (T_S, "81.2.69.160", 401, "", "/v1/items/7", "GET", "Go-http-client/2.0", "items",
      "envoy")),
    ("tyk", variant(TYK, ("api_key", ""), ("response_code", 401)),
     "no api_key, key hash or raw key",
     (1_795_316_645.123456, "203.0.113.99", 401, "", "/widgets/v1/widgets?limit=5", "GET",
      "python-requests/2.32", "Widgets", "tyk")),
    ("aws flat", variant(AWS_FLAT, ("apiKeyId", "-"), ("status", "403")),
     "no apiKeyId, key hash or raw key",
     (1_795_316_645.0, "192.0.2.10", 403, "", "/prod/pets/42", "GET", "", "aws", "aws")),
    ("aws nested", variant(AWS_NESTED, ("identity.apiKeyId", ...), ("status", 403)),
     "no apiKeyId, key hash or raw key",
     (T_S, "2001:db8:85a3::8a2e:370:7334", 403, "", "/prod/pets", "POST", "ua",
      "api.example.com", "aws")),
]  # fmt: skip


def kept(r: RawAccess) -> tuple[Any, ...]:
    return (r.ts, r.ip, r.status, r.auth, r.path, r.method, r.user_agent, r.gateway, r.fmt)


@pytest.mark.parametrize("name, message, detail, record", CASES, ids=[c[0] for c in CASES])
def test_the_reject_is_unchanged_and_keeps_the_request(
    name: str, message: dict[str, Any], detail: str, record: tuple[Any, ...]
) -> None:
    result = parse_message(orjson.dumps(message))
    assert result.events == []
    (reject,) = result.rejects
    assert reject.to_dict() == {"reason": "missing_key", "detail": detail, "index": None}
    assert reject.item is None  # a one-event message: the dead letter carries the message
    assert reject.record is not None
    assert kept(reject.record) == record
    assert (reject.record.key_id, reject.record.key_hash) == (None, None)


@pytest.mark.parametrize("name, message, detail, record", CASES, ids=[c[0] for c in CASES])
def test_in_an_array_the_reject_carries_its_element_and_the_request(
    name: str, message: dict[str, Any], detail: str, record: tuple[Any, ...]
) -> None:
    """The fast path (Kong, native) declines a batch with a reject; the dict path gives the
    same reject, element and record as for one event."""
    good = _with_key(message)
    result = parse_message(orjson.dumps([good, message]))
    assert len(result.events) == 1
    (reject,) = result.rejects
    assert (reject.reason, reject.detail, reject.index, reject.item) == (
        "missing_key", detail, 1, message,
    )  # fmt: skip
    assert reject.record is not None and kept(reject.record) == record


def _with_key(message: dict[str, Any]) -> dict[str, Any]:
    """The same request with a key id in the format's own field."""
    if "started_at" in message:
        return {**message, "authenticated_entity": {"id": "k-1"}}
    if "api_key" in message:
        return {**message, "api_key": "k-1"}
    if "requestId" in message:
        return {**message, "apiKeyId": "k-1"}
    return {**message, "key_id": "k-1"}


@pytest.mark.parametrize(
    "message, reason",
    [
        (variant(GATEWAY_MISSING, ("ip", "999.1.1.1")), "invalid_ip"),
        (variant(GATEWAY_MISSING, ("ts", "yesterday")), "invalid_timestamp"),
        (variant(GATEWAY_MISSING, ("key_id", {})), "invalid_key_id"),
        (variant(GATEWAY_MISSING, ("key_hash", "zz")), "invalid_key_hash"),
    ],
)
def test_other_rejects_win_as_before_and_keep_nothing(message: dict[str, Any], reason: str) -> None:
    """A request that cannot be placed (no ip, no time) is no evidence for any network."""
    (reject,) = parse_message(orjson.dumps(message)).rejects
    assert reject.reason == reason and reject.record is None

"""Real-looking gateway log samples and planted raw keys for the ingest tests."""

from __future__ import annotations

import base64
import copy
from typing import Any

# Keys of our format (not real): tests hold them in memory only.
KEY = "sk_live_4f9aT2kLmN8pQrStUvWxYz0123456789AbCdEfGhIjK7Xq2Zw"
KEY2 = "sk_test_Zz9aT2kLmN8pQrStUvWxYz0123456789AbCdEfGhIjK1Ab2Cd"
T_MS = 1_795_316_645_123  # 2026-11-22T03:04:05.123Z
T_S = T_MS / 1000
T_ISO = "2026-11-22T03:04:05.123Z"

NATIVE: dict[str, Any] = {
    "ts": T_ISO,
    "key_id": "9f2a1c3e",
    "ip": "203.0.113.7",
    "method": "GET",
    "path": "/v1/users",
    "status": 200,
    "user_agent": "acme-sdk/2.3.1",
    "request_id": "req-1",
    "gateway": "gw-eu-1",
}

KONG: dict[str, Any] = {
    "request": {
        "method": "POST",
        "uri": "/v1/orders?page=2",
        "url": "https://api.example.com:443/v1/orders?page=2",
        "size": 412,
        "querystring": {"page": "2"},
        "headers": {
            "host": "api.example.com",
            "user-agent": "curl/8.5.0",
            "authorization": "REDACTED",
            "x-kong-request-id": "b4e8a4b2c1d44a5f",
        },
    },
    "upstream_uri": "/v1/orders?page=2",
    "response": {"status": 201, "size": 934, "headers": {}},
    "latencies": {"request": 21, "kong": 2, "proxy": 19},
    "tries": [{"balancer_latency": 0, "port": 8080, "ip": "10.0.3.7"}],
    "client_ip": "198.51.100.23",
    "authenticated_entity": {"id": "4fd2a1c8-5e0b-4c61-9a3e-7f3b2d1c0a99"},
    "consumer": {"id": "b2e1c3d4-0000-4000-8000-000000000001", "custom_id": "acme"},
    "route": {"name": "orders"},
    "service": {"name": "orders-svc"},
    "started_at": T_MS,
    "workspace": "default",
}

ENVOY: dict[str, Any] = {
    "start_time": "2026-11-22T03:04:05.123Z",
    "method": "GET",
    "path": "/v1/items/7",
    "protocol": "HTTP/1.1",
    "response_code": 200,
    "response_flags": "-",
    "bytes_received": 0,
    "bytes_sent": 512,
    "duration": 12,
    "x_forwarded_for": "10.9.9.9, 81.2.69.160, 10.1.2.3",
    "user_agent": "Go-http-client/2.0",
    "request_id": "6c1e0f54-9d3a-4c2b-8f1e-2a3b4c5d6e7f",
    "authority": "api.example.com",
    "upstream_cluster": "items",
    "downstream_remote_address": "10.0.0.5:51234",
    "key_id": "k-envoy-1",
}

AWS_FLAT: dict[str, Any] = {
    "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    "ip": "192.0.2.10",
    "caller": "-",
    "user": "-",
    "requestTime": "22/Nov/2026:03:04:05 +0000",
    "httpMethod": "GET",
    "resourcePath": "/pets/{petId}",
    "path": "/prod/pets/42",
    "status": "200",
    "protocol": "HTTP/1.1",
    "responseLength": "84",
    "apiKeyId": "x1y2z3abcd",
}

AWS_NESTED: dict[str, Any] = {
    "requestId": "d7bf0bd7-8c72-22f7-0b52-04f9deadbeef",
    "requestTimeEpoch": T_MS,
    "httpMethod": "POST",
    "path": "/prod/pets",
    "status": 201,
    "identity": {
        "sourceIp": "2001:db8:85a3::8a2e:370:7334",
        "apiKeyId": "k9q8r7",
        "userAgent": "ua",
    },
    "domainName": "api.example.com",
}

TYK: dict[str, Any] = {
    "timestamp": "2026-11-22T03:04:05.123456789Z",
    "method": "GET",
    "path": "/widgets",
    "raw_path": "/widgets/v1/widgets?limit=5",
    "response_code": 200,
    "alias": "portal-key",
    "api_key": "5e9d9544a1dcd60001d0ed20a1b2c3d4",
    "api_version": "Default",
    "api_name": "Widgets",
    "api_id": "41433797848f41a558c1573d3e55a410",
    "org_id": "5e9d9544a1dcd60001d0ed20",
    "request_time_ms": 12,
    "ip_address": "203.0.113.99",
    "host": "api.example.com",
    "content_length": 0,
    "user_agent": "python-requests/2.32",
    "tags": ["key-5e9d9544"],
}


def variant(base: dict[str, Any], *edits: tuple[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted-path edits (value ``...`` deletes the field)."""
    out = copy.deepcopy(base)
    for path, value in edits:
        *parents, last = path.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def basic(user: str, password: str = "") -> str:
    """An Authorization: Basic header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

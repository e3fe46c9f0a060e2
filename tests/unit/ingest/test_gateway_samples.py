"""Vendors' default formats: Envoy Gateway's default JSON access log, and the trusted-proxy rule
for every format that reads X-Forwarded-For."""

from __future__ import annotations

from typing import Any

import orjson

from core.keyformat import hash_key
from worker.ingest import parse_message

from .samples import KEY

# Envoy Gateway's default JSON access log (gateway.envoyproxy.io, "Proxy Access Logs": the
# default format's field names), values as an Envoy Gateway proxy writes them, unused fields null.
ENVOY_GATEWAY: dict[str, Any] = {
    ":authority": "api.example.com",
    "bytes_received": 0,
    "bytes_sent": 23,
    "connection_termination_details": None,
    "downstream_local_address": "10.244.0.14:10080",
    "downstream_remote_address": "10.244.0.1:34805",
    "duration": 3,
    "method": "GET",
    "protocol": "HTTP/1.1",
    "requested_server_name": None,
    "response_code": 200,
    "response_code_details": "via_upstream",
    "response_flags": "-",
    "route_name": "httproute/default/backend/rule/0/match/0/api_example_com",
    "start_time": "2026-11-22T03:04:05.123Z",
    "upstream_cluster": "httproute/default/backend/rule/0",
    "upstream_host": "10.244.0.13:3000",
    "upstream_local_address": "10.244.0.14:58822",
    "upstream_transport_failure_reason": None,
    "user-agent": "acme-sdk/2.3.1",
    "x-envoy-origin-path": "/v1/users/42",
    "x-envoy-upstream-service-time": None,
    "x-forwarded-for": "81.2.69.160",
    "x-request-id": "ab1e4da7-5f1d-45ea-bb4a-fa1ccd03b82b",
}


def test_envoy_gateway_default_format_keeps_path_agent_request_id_and_client() -> None:
    entry = {**ENVOY_GATEWAY, "x-api-key": KEY}  # the default has no key field: one is added
    result = parse_message(orjson.dumps(entry))
    (raw,) = result.events
    assert result.fmt == "envoy"
    assert (raw.path, raw.user_agent) == ("/v1/users/42", "acme-sdk/2.3.1")
    assert raw.request_id == "ab1e4da7-5f1d-45ea-bb4a-fa1ccd03b82b"
    assert raw.ip == "81.2.69.160"  # the LB's peer address is private: the XFF entry it added
    assert raw.key_hash == hash_key(KEY) and raw.status == 200


def test_envoy_gateway_default_format_without_a_key_field_says_so() -> None:
    result = parse_message(orjson.dumps(ENVOY_GATEWAY))
    assert [r.reason for r in result.rejects] == ["missing_key"]


def test_a_forged_forwarded_for_entry_does_not_hide_the_client() -> None:
    entry = {**ENVOY_GATEWAY, "x-api-key": KEY, "x-forwarded-for": "6.6.6.6, 81.2.69.160"}
    (raw,) = parse_message(orjson.dumps(entry)).events
    assert raw.ip == "81.2.69.160"


def test_a_key_in_envoy_gateways_origin_path_is_redacted_and_flagged() -> None:
    entry = {**ENVOY_GATEWAY, "x-envoy-origin-path": f"/v1/users?api_key={KEY}"}
    (raw,) = parse_message(orjson.dumps(entry)).events
    assert raw.key_in_query and KEY not in raw.path and raw.key_hash == hash_key(KEY)

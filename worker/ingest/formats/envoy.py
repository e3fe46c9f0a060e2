"""Envoy JSON access logs (``json_format``). The field names are chosen by the operator.

Envoy has no fixed JSON schema, so this parser reads two sets of names: Envoy Gateway's default
JSON format (hyphenated header names: ``x-envoy-origin-path``, ``user-agent``, ``x-request-id``,
``x-forwarded-for``; ref: gateway.envoyproxy.io, "Proxy Access Logs", Default Access Log) and the
underscore names below, plus a key field, which neither default has. The expected
``access_log`` config (field names on the left are what we read)::

    typed_json_format:
      start_time: "%START_TIME%"                        # ISO 8601, required
      method: "%REQ(:METHOD)%"
      path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
      response_code: "%RESPONSE_CODE%"
      user_agent: "%REQ(USER-AGENT)%"
      request_id: "%REQ(X-REQUEST-ID)%"
      x_forwarded_for: "%REQ(X-FORWARDED-FOR)%"
      downstream_remote_address: "%DOWNSTREAM_REMOTE_ADDRESS%"   # ip:port or [v6]:port
      key_id: "%DYNAMIC_METADATA(keywatch:key_id)%"     # or: the key header, hashed here
      x_api_key: "%REQ(X-API-KEY)%"
      authorization: "%REQ(AUTHORIZATION)%"

Accepted aliases: ``api_key_id`` for ``key_id``; ``x-api-key``, ``api_key``, ``apikey`` for the key
header; ``downstream_direct_remote_address``/``client_ip`` for the peer; ``upstream_cluster`` or
``gateway`` for the gateway. Client IP: the peer address unless it is a trusted proxy; then the
right-most ``X-Forwarded-For`` entry not added by a trusted proxy (``worker.ingest.ips``).
"""

from __future__ import annotations

from typing import Any, Final

from worker.ingest.ips import client_ip, forwarded_client
from worker.ingest.keys import (
    credential_less,
    first_str,
    identity_or_none,
    key_from_authorization,
    second_key,
    split_path,
    status,
    text,
    usable,
)
from worker.ingest.model import RawAccess
from worker.ingest.timestamps import parse_ts

NAME: Final = "envoy"
_PEER_FIELDS: Final = ("downstream_remote_address", "downstream_direct_remote_address", "client_ip")
_KEY_FIELDS: Final = ("x_api_key", "x-api-key", "api_key", "apikey")
# Underscore names (Envoy's docs) and Envoy Gateway's default format's hyphenated names.
_PATH_FIELDS: Final = ("path", "x_envoy_original_path", "x-envoy-origin-path")
_XFF_FIELDS: Final = ("x_forwarded_for", "x-forwarded-for", "forwarded_for")
_UA_FIELDS: Final = ("user_agent", "user-agent")
_RID_FIELDS: Final = ("request_id", "x-request-id")


def matches(obj: dict[str, Any]) -> bool:
    """True when ``obj`` looks like an Envoy JSON access log entry."""
    return "start_time" in obj or "downstream_remote_address" in obj


def parse(obj: dict[str, Any]) -> RawAccess:
    """Parse one Envoy access log entry; raises ``Rejected``."""
    ts = parse_ts(obj.get("start_time"))
    ip = _client(obj)
    path, query_key = split_path(_first(obj, _PATH_FIELDS))
    header_key = _header_key(obj)
    raw_key = header_key or query_key
    key_id, key_hash = identity_or_none(
        obj.get("key_id") or obj.get("api_key_id"), obj.get("key_hash"), raw_key
    )
    record = RawAccess(
        ts,
        ip,
        key_id,
        key_hash,
        query_key is not None,
        text(obj.get("method"), 16),
        path,
        status(obj.get("response_code")),
        text(_first(obj, _UA_FIELDS)),
        text(_first(obj, _RID_FIELDS), 128),
        text(obj.get("gateway") or obj.get("upstream_cluster"), 128) or NAME,
        text(obj.get("account_id"), 128) or None,
        NAME,
        None,
        second_key(header_key, query_key),
    )
    if key_id is None and key_hash is None:  # no credential: kept as evidence
        raise credential_less(record)
    return record


def _client(obj: dict[str, Any]) -> str:
    peer_value: Any = None
    for name in _PEER_FIELDS:
        peer_value = obj.get(name)
        if peer_value not in (None, "", "-"):
            break
    peer = None
    if peer_value not in (None, "", "-"):
        peer = client_ip(peer_value, "downstream_remote_address")
    xff = _first(obj, _XFF_FIELDS)
    if xff is None:
        return peer if peer is not None else client_ip(None, "downstream_remote_address")
    ip = forwarded_client(peer, xff)
    return ip if ip is not None else client_ip(None, "downstream_remote_address")


def _first(obj: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The first of ``names`` with a value (Envoy writes null or "-" for an absent header)."""
    for name in names:
        value = obj.get(name)
        if value is not None and value != "" and value != "-":
            return value
    return None


def _header_key(obj: dict[str, Any]) -> str | None:
    auth = first_str(obj.get("authorization"))  # same name in both styles
    if auth:
        key = key_from_authorization(auth)
        if key:
            return key
    for name in _KEY_FIELDS:
        key = usable(first_str(obj.get(name)))
        if key:
            return key
    return None

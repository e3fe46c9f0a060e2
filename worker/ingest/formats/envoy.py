"""Envoy JSON access logs (``json_format``). The field names are chosen by the operator.

Envoy has no fixed JSON schema, so this parser reads the names of Envoy's default format plus a
key field. The expected ``access_log`` config (field names on the left are what we read)::

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
``gateway`` for the gateway. Client IP: the peer address when it is public; when it is a private
(load balancer) address, the left-most public ``x_forwarded_for`` entry; else the peer.
"""

from __future__ import annotations

from typing import Any, Final

from worker.ingest.ips import client_ip, forwarded_client, is_public
from worker.ingest.keys import (
    first_str,
    identity,
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


def matches(obj: dict[str, Any]) -> bool:
    """True when ``obj`` looks like an Envoy JSON access log entry."""
    return "start_time" in obj or "downstream_remote_address" in obj


def parse(obj: dict[str, Any]) -> RawAccess:
    """Parse one Envoy access log entry; raises ``Rejected``."""
    ts = parse_ts(obj.get("start_time"))
    ip = _client(obj)
    path, query_key = split_path(obj.get("path") or obj.get("x_envoy_original_path"))
    header_key = _header_key(obj)
    raw_key = header_key or query_key
    key_id, key_hash = identity(
        obj.get("key_id") or obj.get("api_key_id"), obj.get("key_hash"), raw_key
    )
    return RawAccess(
        ts,
        ip,
        key_id,
        key_hash,
        query_key is not None,
        text(obj.get("method"), 16),
        path,
        status(obj.get("response_code")),
        text(obj.get("user_agent")),
        text(obj.get("request_id"), 128),
        text(obj.get("gateway") or obj.get("upstream_cluster"), 128) or NAME,
        text(obj.get("account_id"), 128) or None,
        NAME,
        None,
        second_key(header_key, query_key),
    )


def _client(obj: dict[str, Any]) -> str:
    peer_value: Any = None
    for name in _PEER_FIELDS:
        peer_value = obj.get(name)
        if peer_value not in (None, "", "-"):
            break
    forwarded = forwarded_client(obj.get("x_forwarded_for"))
    if peer_value in (None, "", "-"):
        if forwarded is not None:
            return forwarded
        return client_ip(None, "downstream_remote_address")
    peer = client_ip(peer_value, "downstream_remote_address")
    if forwarded is not None and not is_public(peer):
        return forwarded
    return peer


def _header_key(obj: dict[str, Any]) -> str | None:
    auth = first_str(obj.get("authorization"))
    if auth:
        key = key_from_authorization(auth)
        if key:
            return key
    for name in _KEY_FIELDS:
        key = usable(first_str(obj.get(name)))
        if key:
            return key
    return None

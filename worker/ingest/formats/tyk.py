"""Tyk analytics records as the Kafka pump writes them.

Fields: ``timestamp`` (RFC 3339 with nanoseconds), ``api_key`` (Tyk logs the hashed or
obfuscated key: treated as the key id, unless it is one of our raw keys, which is hashed),
``ip_address``, ``method``, ``raw_path`` (else ``path``), ``response_code``, ``user_agent``,
``api_name``/``api_id`` (the gateway). ``org_id`` is the API owner's organisation, not the key
holder's account, so it is not used as the account. ``raw_request`` (base64 of the whole request,
headers included) is never read: it may contain a key.
"""

from __future__ import annotations

from typing import Any, Final

from worker.ingest.ips import client_ip
from worker.ingest.keys import credential_less, identity_or_none, split_path, status, text
from worker.ingest.model import RawAccess
from worker.ingest.timestamps import parse_ts

NAME: Final = "tyk"


def matches(obj: dict[str, Any]) -> bool:
    """True when ``obj`` looks like a Tyk analytics record."""
    return "api_key" in obj and ("ip_address" in obj or "api_id" in obj or "org_id" in obj)


def parse(obj: dict[str, Any]) -> RawAccess:
    """Parse one Tyk analytics record; raises ``Rejected``."""
    ts = parse_ts(obj.get("timestamp"))
    ip = client_ip(obj.get("ip_address"), "ip_address")
    path, query_key = split_path(obj.get("raw_path") or obj.get("path"))
    key_id, key_hash = identity_or_none(obj.get("api_key"), None, query_key, "api_key")
    record = RawAccess(
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
        text(obj.get("api_name") or obj.get("api_id"), 128) or NAME,
        None,
        NAME,
    )
    if key_id is None and key_hash is None:  # no credential: kept as evidence
        raise credential_less(record, "api_key")
    return record

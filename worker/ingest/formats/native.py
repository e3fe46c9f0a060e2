"""keywatch's own event format (see contracts.md, "Access-log event formats").

``{"ts", "key_id" | "key_hash", "ip", "method", "path", "status", "user_agent", "request_id",
"gateway", "account_id"?, "auth"?, "key_in_query"?}`` (the last two from keywatch gateway);
required: ``ts``, ``ip`` and ``key_id`` or ``key_hash`` (or a key in
the path's query string, which is hashed and flagged).
"""

from __future__ import annotations

from typing import Any, Final

from worker.ingest.ips import client_ip
from worker.ingest.keys import credential_less, identity_or_none, split_path, status, text
from worker.ingest.model import RawAccess
from worker.ingest.timestamps import parse_ts

NAME: Final = "native"


def matches(obj: dict[str, Any]) -> bool:
    """True when ``obj`` looks like a native event."""
    return "ts" in obj and ("ip" in obj or "key_id" in obj or "key_hash" in obj)


def parse(obj: dict[str, Any]) -> RawAccess:
    """Parse one native event; raises ``Rejected``."""
    ts = parse_ts(obj.get("ts"))
    ip = client_ip(obj.get("ip"))
    path, query_key = split_path(obj.get("path"))
    key_id, key_hash = identity_or_none(obj.get("key_id"), obj.get("key_hash"), query_key)
    record = RawAccess(
        ts,
        ip,
        key_id,
        key_hash,
        query_key is not None or obj.get("key_in_query") is True,
        text(obj.get("method"), 16),
        path,
        status(obj.get("status")),
        text(obj.get("user_agent")),
        text(obj.get("request_id"), 128),
        text(obj.get("gateway"), 128),
        text(obj.get("account_id"), 128) or None,
        NAME,
        auth=text(obj.get("auth"), 16),
    )
    if key_id is None and key_hash is None:  # no credential: kept as evidence
        raise credential_less(record)
    return record

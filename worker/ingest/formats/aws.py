"""AWS API Gateway access logs: JSON built from ``$context`` variables, nested or flattened.

A stage's access-log format is user-written JSON; we read the ``$context`` names (flattened:
``"sourceIp"``, ``"apiKeyId"``; dotted: ``"identity.sourceIp"``; nested: ``"identity":
{"sourceIp": …}``) and the names of AWS's example JSON format (``"ip"``, ``"requestTime"``).
"-" is API Gateway's empty value. Fields: ``requestTimeEpoch`` (ms) or ``requestTime`` (CLF
``21/Nov/2026:03:04:05 +0000``), ``httpMethod``, ``path`` (else ``resourcePath``), ``status`` (often
a string), ``requestId``, ``userAgent``, ``apiKeyId`` (the key id), ``apiKey`` (the raw key:
hashed at once), ``domainName``/``apiId`` as the gateway.
(ref: docs.aws.amazon.com/apigateway, "$context variables for data models, authorizers, …")
"""

from __future__ import annotations

from typing import Any, Final

from worker.ingest.ips import client_ip
from worker.ingest.keys import (
    credential_less,
    identity_or_none,
    second_key,
    split_path,
    status,
    text,
    usable,
)
from worker.ingest.model import RawAccess
from worker.ingest.timestamps import parse_ts

NAME: Final = "aws"
_EMPTY: Final[dict[str, Any]] = {}
_MISSING: Final = (None, "", "-")


def matches(obj: dict[str, Any]) -> bool:
    """True when ``obj`` looks like an API Gateway access log entry."""
    return "requestId" in obj and (
        "httpMethod" in obj or "requestTimeEpoch" in obj or "requestTime" in obj
    )


def _pick(obj: dict[str, Any], ident: dict[str, Any], name: str, *aliases: str) -> Any:
    """``name`` flattened, dotted under identity, nested under identity, then aliases."""
    for value in (obj.get(name), obj.get("identity." + name), ident.get(name)):
        if value not in _MISSING:
            return value
    for alias in aliases:
        value = obj.get(alias)
        if value not in _MISSING:
            return value
    return None


def parse(obj: dict[str, Any]) -> RawAccess:
    """Parse one API Gateway access log entry; raises ``Rejected``."""
    ident = obj.get("identity")
    ident = ident if ident.__class__ is dict else _EMPTY
    epoch = obj.get("requestTimeEpoch")
    ts = parse_ts(epoch if epoch not in _MISSING else obj.get("requestTime"))
    ip = client_ip(_pick(obj, ident, "sourceIp", "ip"), "sourceIp")
    path, query_key = split_path(_pick(obj, ident, "path", "resourcePath"))
    raw = _pick(obj, ident, "apiKey")
    raw_key = usable(raw) if isinstance(raw, str) else None
    key_id_value = _pick(obj, ident, "apiKeyId")
    key_id, key_hash = identity_or_none(key_id_value, None, raw_key or query_key, "apiKeyId")
    record = RawAccess(
        ts,
        ip,
        key_id,
        key_hash,
        query_key is not None,
        text(obj.get("httpMethod"), 16),
        path,
        status(obj.get("status")),
        text(_pick(obj, ident, "userAgent")),
        text(obj.get("requestId"), 128),
        text(_pick(obj, ident, "domainName", "apiId"), 128) or NAME,
        None,  # accountId is the API owner's AWS account, not the key's
        NAME,
        None,
        second_key(raw_key, query_key),
    )
    if key_id is None and key_hash is None:  # no credential: kept as evidence
        raise credential_less(record, "apiKeyId")
    return record

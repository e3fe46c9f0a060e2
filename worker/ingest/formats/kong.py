"""Kong ``kafka-log`` / ``http-log`` / ``file-log`` objects (``kong.log.serialize()``).

Fields used: ``started_at`` (epoch ms), ``client_ip`` (Kong has already applied
``trusted_ips``/``real_ip_header``), ``request.{method, uri | url, querystring, headers, id}``,
``response.status``, ``authenticated_entity.id``, ``consumer.{id, custom_id}``,
``service.name``/``route.name``.

Key identity: ``authenticated_entity.id`` is the credential (the key) Kong authenticated. There is
deliberately no fallback to ``consumer.id``: a consumer may own several keys, and merging their
usage into one profile would blur exactly the anomalies keywatch looks for. The consumer
(``custom_id``, else ``id``) becomes the account. A raw key still present in the logged
headers (Kong writes ``REDACTED`` for ``authorization`` unless configured otherwise;
``apikey``/``x-api-key`` remain unless key-auth's ``hide_credentials`` is on) or in the query
string is hashed at once.
"""

from __future__ import annotations

from typing import Any, Final

from worker.ingest.ips import client_ip
from worker.ingest.keys import (
    credential_less,
    first_str,
    identity_or_none,
    key_from_headers,
    key_from_query_dict,
    second_key,
    split_path,
    status,
    text,
)
from worker.ingest.model import RawAccess
from worker.ingest.timestamps import parse_ts

NAME: Final = "kong"
_EMPTY: Final[dict[str, Any]] = {}
_ENTITY: Final = "authenticated_entity.id"  # the key id field, named in rejects


def matches(obj: dict[str, Any]) -> bool:
    """True when ``obj`` looks like a serialized Kong log entry."""
    return "started_at" in obj or ("client_ip" in obj and "request" in obj)


def _dict(value: Any) -> dict[str, Any]:
    return value if value.__class__ is dict else _EMPTY


def parse(obj: dict[str, Any]) -> RawAccess:
    """Parse one Kong log entry; raises ``Rejected``."""
    # The sub-objects are checked inline rather than through ``_dict``: this runs once per
    # event, and the calls were ~10% of it (benchmarks/worker_bench.py, py-spy).
    ts = parse_ts(obj.get("started_at"))
    ip = client_ip(obj.get("client_ip"), "client_ip")
    req = obj.get("request")
    if req.__class__ is not dict:
        req = _EMPTY
    headers = req.get("headers")
    if headers.__class__ is not dict:
        headers = _EMPTY
    uri = _uri(req)
    path, query_key = split_path(uri)
    if query_key is None and not (uri.__class__ is str and "?" in uri):
        query = req.get("querystring")  # the uri's query was checked
        if query:
            query_key = key_from_query_dict(query)
    header_key = key_from_headers(headers) if headers else None
    raw_key = header_key or query_key
    entity = obj.get("authenticated_entity")
    entity_id = entity.get("id") if entity.__class__ is dict else None
    key_id, key_hash = identity_or_none(entity_id, None, raw_key, _ENTITY)
    consumer = obj.get("consumer")
    if consumer.__class__ is not dict:
        consumer = _EMPTY
    account = text(consumer.get("custom_id") or consumer.get("id"), 128) or None
    response = obj.get("response")
    code = response.get("status") if response.__class__ is dict else None
    record = RawAccess(
        ts,
        ip,
        key_id,
        key_hash,
        query_key is not None,
        text(req.get("method"), 16),
        path,
        code if code.__class__ is int and 0 <= code < 1000 else status(code),
        text(first_str(headers.get("user-agent"))),
        _request_id(req, headers),
        _gateway(obj),
        account,
        NAME,
        text(consumer.get("id"), 128) or None,
        second_key(header_key, query_key),
    )
    if key_id is None and key_hash is None:  # no credential: kept as evidence
        raise credential_less(record, _ENTITY)
    return record


def _uri(req: dict[str, Any]) -> Any:
    """``request.uri`` (path and query), else the path part of ``request.url``."""
    uri = req.get("uri")
    if isinstance(uri, str) and uri:
        return uri
    url = req.get("url")
    if isinstance(url, str) and "://" in url:
        rest = url.partition("://")[2]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return url


def _request_id(req: dict[str, Any], headers: dict[str, Any]) -> str:
    """Kong ≥ 3.5 logs ``request.id``; older versions only the correlation headers."""
    rid = req.get("id") or first_str(headers.get("x-kong-request-id"))
    return text(rid or first_str(headers.get("x-request-id")), 128)


def _gateway(obj: dict[str, Any]) -> str:
    name = _dict(obj.get("service")).get("name") or _dict(obj.get("route")).get("name")
    return text(name, 128) or NAME

"""The fast path of ``parse_message`` for Kong and native arrays: JSON decoded straight into
msgspec structs that name only the fields keywatch reads.

The decoder skips every other field (Kong's ``latencies``, ``tries``, most headers...) without
building a dict for it, and the mappers read attributes instead of ``dict.get``. The result is
exactly what the dict path (``worker.ingest.parse``) gives, or ``None`` and the caller takes
the dict path, which then decides everything, rejects included:

- anything msgspec refuses (a sub-object that is not an object, an element that is not one, a
  field of another type, an integer outside int64, invalid JSON...);
- a first object that format detection would not call Kong (or native);
- any element that the mapper rejects: the dead letter carries the element as decoded by the
  dict path, and its detail, so rejects never come from here;
- bytes that are not valid UTF-8, checked over the whole message because msgspec does not
  check the fields it skips (orjson rejects the whole message for them, ``invalid_utf8``).

One difference remains: a number too large for a double in a field keywatch does not read is
skipped here, where orjson rejects the whole message (``invalid_json``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeGuard

import msgspec

from worker.ingest.formats import kong, native
from worker.ingest.ips import client_ip, known_ips
from worker.ingest.keys import (
    first_str,
    identity,
    key_from_authorization,
    key_from_query_dict,
    second_key,
    split_path,
    status,
    text,
    usable,
)
from worker.ingest.model import ParseResult, RawAccess, Rejected
from worker.ingest.timestamps import MAX_MS as _MAX_MS
from worker.ingest.timestamps import MIN_MS as _MIN_MS
from worker.ingest.timestamps import parse_ts

UNSET: Final = msgspec.UNSET
Unset = msgspec.UnsetType
# A JSON value as orjson gives it, except integers beyond int64: those fail validation, so the
# dict path (where orjson makes them floats) handles the message.
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
J = str | Int64 | float | bool | None | list[Any] | dict[str, Any]
_HEADER_NAMES: Final = {
    "user_agent": "user-agent", "x_request_id": "x-request-id",
    "x_kong_request_id": "x-kong-request-id", "x_api_key": "x-api-key",
    "api_key": "api-key", "x_apikey": "x-apikey",
}  # fmt: skip


class _Headers(msgspec.Struct, gc=False, rename=_HEADER_NAMES):
    """The request headers keywatch reads (Kong logs them lower-case)."""

    authorization: J = None
    user_agent: J = None
    x_request_id: J = None
    x_kong_request_id: J = None
    x_api_key: J = None  # the order of keys.HEADER_KEY_NAMES: x-api-key, apikey, api-key, ...
    apikey: J = None
    api_key: J = None
    x_apikey: J = None


class _Request(msgspec.Struct, gc=False):
    """``request``."""

    method: J = None
    uri: J = None
    url: J = None
    id: J = None
    querystring: J = None
    headers: _Headers | None = None


class _Status(msgspec.Struct, gc=False):
    """``response``."""

    status: J = None


class _Id(msgspec.Struct, gc=False):
    """``authenticated_entity``."""

    id: J = None


class _Consumer(msgspec.Struct, gc=False):
    """``consumer``."""

    id: J = None
    custom_id: J = None


class _Named(msgspec.Struct, gc=False):
    """``service`` and ``route``."""

    name: J = None


class KongEntry(msgspec.Struct, gc=False):
    """A ``kong.log.serialize()`` object: the fields ``formats.kong`` reads, and the ones format
    detection looks at (``UNSET`` when absent)."""

    started_at: J | Unset = UNSET
    client_ip: J | Unset = UNSET
    request: _Request | Unset | None = UNSET
    response: _Status | None = None
    authenticated_entity: _Id | None = None
    consumer: _Consumer | None = None
    service: _Named | None = None
    route: _Named | None = None
    ts: J | Unset = UNSET  # detection only: native's fields
    ip: J | Unset = UNSET
    key_id: J | Unset = UNSET
    key_hash: J | Unset = UNSET


class NativeEntry(msgspec.Struct, gc=False):
    """A native event (contracts.md); ``UNSET`` marks the fields detection looks at."""

    ts: J | Unset = UNSET
    ip: J | Unset = UNSET
    key_id: J | Unset = UNSET
    key_hash: J | Unset = UNSET
    method: J = None
    path: J = None
    status: J = None
    user_agent: J = None
    request_id: J = None
    gateway: J = None
    account_id: J = None
    auth: J = None
    key_in_query: J = None


_KONG: Final = msgspec.json.Decoder(list[KongEntry] | KongEntry)
_NATIVE: Final = msgspec.json.Decoder(list[NativeEntry] | NativeEntry)
_NO_REQUEST: Final = _Request()
_NO_HEADERS: Final = _Headers()
_NO_CONSUMER: Final = _Consumer()
_IPS: Final = known_ips()


def parse(raw: object, fmt: str, max_events: int) -> ParseResult | None:
    """The message's ``ParseResult`` when the fast path can tell it exactly, else ``None``."""
    if not isinstance(raw, bytes):  # text, bytearray, memoryview: rare, the dict path
        return None
    if fmt == "kong" or (fmt == "auto" and (b'"started_at"' in raw or b'"client_ip"' in raw)):
        return _run(raw, _KONG, _kong_first, _kong, fmt, kong.NAME, max_events)
    if fmt in ("auto", "native") and b'"ts"' in raw:
        return _run(raw, _NATIVE, _native_first, _native, fmt, native.NAME, max_events)
    return None


def _run(
    raw: bytes, decoder: Any, first: Any, mapper: Any, fmt: str, name: str, max_events: int
) -> ParseResult | None:
    if not raw.isascii():
        try:
            str(raw, "utf-8")  # what msgspec skips unchecked; orjson checks it all
        except UnicodeDecodeError:
            return None
    try:
        doc = decoder.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    items = doc if doc.__class__ is list else [doc]
    if not items or len(items) > max_events or (fmt == "auto" and not first(items[0])):
        return None
    try:
        return ParseResult(name, [mapper(item) for item in items])
    except Rejected:
        return None


def _opt(value: Any) -> Any:
    return None if value is UNSET else value


def _native_first(e: NativeEntry | KongEntry) -> bool:
    """``native.matches`` on the first object."""
    return e.ts is not UNSET and (
        e.ip is not UNSET or e.key_id is not UNSET or e.key_hash is not UNSET
    )


def _kong_first(e: KongEntry) -> bool:
    """Detection picks Kong: not native (tried first), and ``kong.matches``."""
    if _native_first(e):
        return False
    return e.started_at is not UNSET or (e.client_ip is not UNSET and e.request is not UNSET)


def _native(e: NativeEntry) -> RawAccess:
    """``formats.native.parse`` on the struct (common cases spelled out, as in ``_kong``)."""
    ts = parse_ts(_opt(e.ts))
    v = e.ip
    ip = _IPS.get(v) if v.__class__ is str else None
    if ip is None:
        ip = client_ip(_opt(v))
    path, query_key = split_path(e.path)
    key_id, key_hash = identity(_opt(e.key_id), _opt(e.key_hash), query_key)
    method, agent, rid, gateway, account = (
        e.method, e.user_agent, e.request_id, e.gateway, e.account_id
    )  # fmt: skip
    code = e.status
    return RawAccess(
        ts, ip, key_id, key_hash,
        query_key is not None or e.key_in_query is True,
        method if _plain(method, 16) else text(method, 16),
        path,
        code if code.__class__ is int and 0 <= code < 1000 else status(code),
        agent if _plain(agent, 512) else text(agent),
        rid if _plain(rid, 128) else text(rid, 128),
        gateway if _plain(gateway, 128) else text(gateway, 128),
        account if _plain(account, 128) and account else text(account, 128) or None,
        "native", auth=text(e.auth, 16),
    )  # fmt: skip


def _kong(e: KongEntry) -> RawAccess:
    """``formats.kong.parse`` on the struct, step for step.

    The commonest cases of ``parse_ts``, ``client_ip`` and ``text`` are spelled out: the calls
    were a tenth of this function (tests/unit/ingest/test_typed.py checks it against the dict
    path)."""
    v = e.started_at
    ts = v / 1000 if v.__class__ is int and _MIN_MS <= v < _MAX_MS else parse_ts(_opt(v))
    v = e.client_ip
    ip = _IPS.get(v) if v.__class__ is str else None
    if ip is None:
        ip = client_ip(_opt(v), "client_ip")
    req = e.request
    if req is None or req is UNSET:
        req = _NO_REQUEST
    headers = req.headers or _NO_HEADERS
    uri = req.uri
    if uri.__class__ is not str or not uri:
        uri = _url_path(req.url)
    path, query_key = split_path(uri)
    if query_key is None and not (uri.__class__ is str and "?" in uri):
        query = req.querystring  # the uri's query was checked
        if query:
            query_key = key_from_query_dict(query)
    header_key = _header_key(headers)
    entity = e.authenticated_entity
    key_id, key_hash = identity(
        entity.id if entity is not None else None, None, header_key or query_key,
        "authenticated_entity.id",
    )  # fmt: skip
    consumer = e.consumer or _NO_CONSUMER
    code = e.response.status if e.response is not None else None
    method, agent, cid = req.method, headers.user_agent, consumer.id
    account = consumer.custom_id or cid
    return RawAccess(
        ts, ip, key_id, key_hash, query_key is not None,
        method if _plain(method, 16) else text(method, 16),
        path,
        code if code.__class__ is int and 0 <= code < 1000 else status(code),
        agent if _plain(agent, 512) else text(first_str(agent)),
        _request_id(req, headers),
        _gateway(e),
        account if _plain(account, 128) and account else text(account, 128) or None,
        "kong",
        cid if _plain(cid, 128) and cid else text(cid, 128) or None,
        second_key(header_key, query_key),
    )  # fmt: skip


def _plain(v: object, limit: int) -> TypeGuard[str]:
    """``text(v, limit) is v``: a short string with no key in it."""
    return v.__class__ is str and len(v) <= limit and "_live_" not in v and "_test_" not in v


def _url_path(url: Any) -> Any:
    """``kong._uri`` once ``request.uri`` is absent: the path part of ``request.url``."""
    if isinstance(url, str) and "://" in url:
        rest = url.partition("://")[2]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return url


def _header_key(h: _Headers) -> str | None:
    """``keys.key_from_headers`` on the struct."""
    auth = h.authorization
    if auth is not None and auth != "REDACTED":
        found = first_str(auth)
        key = key_from_authorization(found) if found else None
        if key:
            return key
    for value in (h.x_api_key, h.apikey, h.api_key, h.x_apikey):
        if value is not None:
            key = usable(first_str(value))
            if key:
                return key
    return None


def _request_id(req: _Request, headers: _Headers) -> str:
    rid: Any = req.id or first_str(headers.x_kong_request_id)
    return text(rid or first_str(headers.x_request_id), 128)


def _gateway(e: KongEntry) -> str:
    service, route = e.service, e.route
    name = (service.name if service is not None else None) or (
        route.name if route is not None else None
    )
    return text(name, 128) or kong.NAME

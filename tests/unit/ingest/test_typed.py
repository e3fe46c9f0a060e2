"""The typed fast path (worker.ingest.typed) against the dict path: the same result, or none."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.ingest import parse_message, typed
from worker.ingest.model import ParseResult

from .samples import KEY, KEY2, KONG, NATIVE, T_ISO, T_MS
from .test_properties import json_values

KONG_FIELDS = [
    "started_at", "client_ip", "request", "response", "authenticated_entity", "consumer",
    "service", "route", "ts", "ip", "key_id", "key_hash", "tries",
]  # fmt: skip
REQUEST_FIELDS = ["method", "uri", "url", "id", "querystring", "headers", "size"]
HEADER_FIELDS = [
    "authorization", "user-agent", "x-request-id", "x-kong-request-id", "x-api-key", "apikey",
    "api-key", "x-apikey", "host", "User-Agent",
]  # fmt: skip
NATIVE_FIELDS = [*NATIVE, "key_hash", "account_id", "auth", "key_in_query", "started_at"]
# values that reach the interesting branches: keys, placeholders, UUIDs, paths with queries
SPECIAL = st.sampled_from([
    KEY, KEY2, f"Bearer {KEY}", "REDACTED", "-", "", None, T_ISO, T_MS, 2**63, 2**64 - 1,
    "4fd2a1c8-5e0b-4c61-9a3e-7f3b2d1c0a99", f"/v1/x?api_key={KEY}", "/v1/x?page=2",
    f"https://h:443/v1/y?key={KEY}", "https://h", {"api_key": KEY}, [KEY, "x"], ["x"],
    "a" * 600, "  k1 ", 404, "404", 1e3, True, [], {},
])  # fmt: skip
values = st.one_of(SPECIAL, json_values)


def dict_path(raw: bytes, fmt: str) -> ParseResult:
    """``parse_message`` with the fast path switched off."""
    saved = typed.parse
    typed.parse = lambda *_: None  # type: ignore[assignment]
    try:
        return parse_message(raw, fmt)
    finally:
        typed.parse = saved


def same(raw: bytes, fmt: str = "auto") -> ParseResult | None:
    """The fast path's answer, checked equal to the dict path's whenever it gives one."""
    fast = typed.parse(raw, fmt, 10_000)
    slow = dict_path(raw, fmt)
    if fast is not None:
        assert fast.fmt == slow.fmt
        assert fast.events == slow.events
        assert slow.rejects == [] and fast.rejects == []
    assert parse_message(raw, fmt) == slow
    return fast


def mutate(data: st.DataObject, event: dict[str, Any], fields: list[str]) -> None:
    for _ in range(data.draw(st.integers(1, 4))):
        name = data.draw(st.sampled_from(fields))
        if data.draw(st.booleans()):
            event.pop(name, None)
        else:
            event[name] = data.draw(values)


@settings(deadline=None)
@given(data=st.data())
def test_kong_mutations(data: st.DataObject) -> None:
    event = dict(KONG, request=dict(KONG["request"], headers=dict(KONG["request"]["headers"])))
    mutate(data, event["request"]["headers"], HEADER_FIELDS)
    mutate(data, event["request"], REQUEST_FIELDS)
    mutate(data, event, KONG_FIELDS)
    n = data.draw(st.integers(0, 3))
    raw = orjson.dumps([event, KONG][:n] if data.draw(st.booleans()) else event)
    same(raw, data.draw(st.sampled_from(["auto", "kong"])))


@settings(deadline=None)
@given(data=st.data())
def test_native_mutations(data: st.DataObject) -> None:
    event = dict(NATIVE)
    mutate(data, event, NATIVE_FIELDS)
    raw = orjson.dumps([NATIVE, event] if data.draw(st.booleans()) else event)
    same(raw, data.draw(st.sampled_from(["auto", "native"])))


@pytest.mark.parametrize(
    ("sample", "fmt"), [(KONG, "kong"), (NATIVE, "native")], ids=["kong", "native"]
)
def test_ordinary_arrays_take_the_fast_path(sample: dict[str, Any], fmt: str) -> None:
    fast = same(orjson.dumps([sample] * 50))
    assert fast is not None and fast.fmt == fmt and len(fast.events) == 50


@pytest.mark.parametrize(
    "raw",
    [
        orjson.dumps([KONG, 1]),  # not an object: the dict path rejects that element
        orjson.dumps([KONG, {**KONG, "client_ip": "nope"}]),  # a reject: the dict path carries it
        orjson.dumps({**KONG, "request": "GET /"}),  # a sub-object of another type
        orjson.dumps({**NATIVE, "ts": 2**64 - 1}),  # beyond int64: orjson makes it a float
        orjson.dumps([{**KONG, "ts": T_ISO, "ip": "1.2.3.4"}]),  # detection says native
        orjson.dumps([]),
        orjson.dumps(KONG)[:-1] + b',"x":"\xff"}',  # invalid UTF-8 in a field nobody reads
        orjson.dumps(NATIVE).decode(),  # text, not bytes
    ],
    ids=["int", "reject", "request-str", "u64", "native-shape", "empty", "utf8", "str"],
)
def test_declines_what_only_the_dict_path_can_answer(raw: bytes | str) -> None:
    assert typed.parse(raw, "auto", 10_000) is None
    if isinstance(raw, bytes):
        same(raw)
    slow = parse_message(raw)
    assert slow.events or slow.rejects or slow.fmt == "unknown"


def test_invalid_utf8_still_rejects_the_whole_message() -> None:
    raw = orjson.dumps([KONG, KONG])[:-2] + b',"z":"\xed\xa0\x80"}]'
    assert [r.reason for r in parse_message(raw).rejects] == ["invalid_utf8"]

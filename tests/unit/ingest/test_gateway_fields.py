"""The native format carries keywatch gateway's ``auth`` and ``key_in_query`` fields."""

from __future__ import annotations

import orjson

from worker.ingest.parse import parse_message


def test_native_event_from_the_gateway() -> None:
    event = {"ts": 1_764_000_000_000, "ip": "203.0.113.7", "key_hash": "a" * 64,
             "method": "GET", "path": "/v1/u?api_key=REDACTED", "status": 401,
             "auth": "invalid", "key_in_query": True, "gateway": "gw-1"}  # fmt: skip
    result = parse_message(orjson.dumps([event]))
    assert not result.rejects
    [raw] = result.events
    assert raw.auth == "invalid" and raw.key_in_query is True and raw.key_hash == "a" * 64


def test_key_in_query_flag_alone_is_honoured() -> None:
    event = {"ts": 1_764_000_000_000, "ip": "203.0.113.7", "key_id": "k1", "path": "/v1/u",
             "status": 200, "auth": "ok", "key_in_query": True}  # fmt: skip
    [raw] = parse_message(orjson.dumps(event)).events
    assert raw.key_in_query is True and raw.auth == "ok"
    [plain] = parse_message(orjson.dumps({**event, "key_in_query": "yes"})).events
    assert plain.key_in_query is False

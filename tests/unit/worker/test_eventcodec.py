"""The re-keyed batch encoding: lossless, compact, and strict about what it accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import msgpack
import msgspec
import orjson
import pytest

from core.errors import InputError
from detectors.model import AccessEvent
from worker.eventcodec import (
    FIELDS,
    EventBatch,
    EventRow,
    decode_batch,
    decode_sourced,
    encode_batch,
    encode_rows,
    raw_row,
    row_of,
)
from worker.ingest import parse_message
from worker.records import encode

V1 = Path(__file__).resolve().parents[2] / "fixtures" / "records_v1"

EVENTS = [
    AccessEvent(1795000000.123, "9f2a1c3e", "203.0.113.7", "GET", "/v1/users", 200, "sdk/1",
                "r-1", "gw-eu-1", "acme", False, "native"),
    AccessEvent(1795000001.5, "k2", "2001:db8::1", key_in_query=True, fmt="kong"),
    AccessEvent(0.0, "k3", "8.8.8.8", account_id=None, status=503),
]  # fmt: skip


def test_round_trip_is_lossless() -> None:
    assert decode_batch(encode_batch(EVENTS)) == EVENTS
    assert decode_batch(encode_batch([])) == []


def test_rows_from_parsed_records_equal_rows_from_events() -> None:
    raw = b'[{"ts": 1795000000000, "key_id": "k9", "ip": "8.8.8.8", "path": "/x", "status": 201}]'
    rec = parse_message(raw).events[0]
    assert raw_row(rec, "resolved", "acct") == row_of(rec.to_event("resolved", "acct"))
    assert decode_batch(encode_rows([raw_row(rec, "k9", None)])) == [rec.to_event("k9")]


def test_encoding_is_compact() -> None:
    many = EVENTS[:1] * 200
    # The JSON of the same events is the yardstick: tuples carry no field names.
    as_json = len(orjson.dumps([_asdict(e) for e in many]))
    assert len(encode_batch(many)) < as_json / 2


def _asdict(e: AccessEvent) -> dict[str, object]:
    return {name: getattr(e, name) for name in e.__slots__}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",  # never used in msgpack
        msgpack.packb({"v": 1}),
        msgpack.packb([2, []]),  # unknown version
        msgpack.packb([1, {}]),
        msgpack.packb([1, [[1.0, "k"]]]),  # too few fields
        msgpack.packb([1, [[1.0, "k", "ip"] + [None] * 10]]),  # wrong types
        msgpack.packb([1, [["1.0", "k", "ip"]]]),  # a string for a float: no coercion
        msgpack.packb([1, [5]]),
    ],
)
def test_anything_else_is_a_bad_batch(raw: bytes) -> None:
    with pytest.raises(InputError) as err:
        decode_batch(raw)
    assert err.value.reason == "bad_batch"


def test_batches_of_the_previous_release_decode() -> None:
    expected = orjson.loads((V1 / "expected.json").read_bytes())["batch_events"]
    events = decode_batch((V1 / "batch_events.bin").read_bytes())
    width = len(expected[0])  # fields appended since then take their defaults
    assert [[getattr(e, f) for f in e.__slots__[:width]] for e in events] == expected
    assert all(e.extra_key_hash is None for e in events)
    assert decode_batch((V1 / "batch_empty.bin").read_bytes()) == []
    # and the current encoder still writes that very layout
    assert encode_batch(EVENTS) == (V1 / "batch_events.bin").read_bytes()


def test_rows_are_access_events_in_field_order() -> None:
    assert AccessEvent.__slots__ == FIELDS
    assert row_of(EVENTS[0]) == tuple(getattr(EVENTS[0], f) for f in FIELDS[:-2])
    second = AccessEvent(*row_of(EVENTS[0]), extra_key_hash="ab" * 32)
    assert row_of(second) == tuple(getattr(second, f) for f in FIELDS[:-1])
    assert decode_batch(encode_batch([second])) == [second]
    both = AccessEvent(*row_of(second), auth="revoked")
    assert row_of(both) == tuple(getattr(both, f) for f in FIELDS)
    # tuples encode exactly as the typed structs do
    rows = [row_of(both)]  # full width
    structs = [EventRow(*r) for r in rows]
    assert encode_rows(rows, [(3, 1)], [3]) == encode(EventBatch(1, structs, [(3, 1)], [3]))


@pytest.mark.parametrize(
    "extra, auth, width",
    [(None, "", 12), ("ab" * 32, "", 13), (None, "invalid", 14), ("ab" * 32, "revoked", 14)],
)
def test_the_shortest_row_carries_the_trailing_fields(
    extra: str | None, auth: str, width: int
) -> None:
    """Trailing defaults are left out; an earlier default is a placeholder, never dropped."""
    ev = AccessEvent(*row_of(EVENTS[0]), extra_key_hash=extra, auth=auth)
    row = row_of(ev)
    assert len(row) == width
    assert decode_batch(encode_batch([ev])) == [ev]
    raw = parse_message(
        orjson.dumps({"ts": "2026-11-30T10:00:00Z", "ip": "203.0.113.7", "key_id": "k1",
                      "method": "GET", "path": "/v1/x", "status": 401, "auth": auth or None})
    ).events[0]  # fmt: skip
    assert raw.auth == auth
    assert decode_batch(encode_rows([raw_row(raw, "k1", None)]))[0].auth == auth


def test_a_newer_writers_trailing_field_is_ignored() -> None:
    """Forward compatibility: a field appended by the next release does not stop this one."""
    row = [*row_of(EVENTS[0]), None, "", "a-new-field", 7]
    newer = msgpack.packb([1, [row]], use_bin_type=True)
    assert decode_batch(newer) == EVENTS[:1]


def test_an_older_writers_missing_trailing_fields_take_their_defaults() -> None:
    """Backward compatibility: fields a release appends are filled for older batches."""
    older = msgpack.packb([1, [[1795000001.5, "k2", "2001:db8::1"]]], use_bin_type=True)
    assert decode_batch(older) == [AccessEvent(1795000001.5, "k2", "2001:db8::1")]


def test_the_wire_row_keeps_the_events_field_order() -> None:
    """``EventRow`` is the wire twin of ``AccessEvent``: same fields, same order (append only)."""
    assert EventRow.__struct_fields__ == tuple(f.name for f in dataclasses.fields(AccessEvent))


def test_a_batch_carries_the_sources_of_its_rows() -> None:
    """The source runs travel in the value (worker.reorder); the events decode as before."""
    rows = [row_of(e) for e in EVENTS]
    raw = encode_rows(rows, ((3, 1), (5, len(rows) - 1)), (3, 5, 9))
    assert decode_sourced(raw) == (EVENTS, [(3, 1), (5, len(rows) - 1)], [3, 5, 9])
    assert decode_batch(raw) == EVENTS


def test_a_batch_without_sources_decodes_with_none() -> None:
    """An older ingest's batch (no runs): the profile stage treats it as one unknown source."""
    assert decode_sourced(encode_batch(EVENTS)) == (EVENTS, [], [])
    older = (V1 / "batch_events.bin").read_bytes()
    assert decode_sourced(older)[1:] == ([], [])


def test_a_batch_with_sources_reads_in_the_previous_release() -> None:
    """Rolling upgrade: the release before the source fields reads the new batches."""

    class PreviousBatch(msgspec.Struct, array_like=True):
        version: int
        rows: list[EventRow]

    raw = encode_rows([row_of(e) for e in EVENTS], ((1, len(EVENTS)),), (1,))
    assert len(msgspec.msgpack.decode(raw, type=PreviousBatch).rows) == len(EVENTS)

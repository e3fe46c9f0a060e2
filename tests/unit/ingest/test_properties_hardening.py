"""Property tests for the hardening cases: compressed record batches, huge rejected arrays, and
requests carrying two credentials."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given, settings
from hypothesis import strategies as st

from core.keyformat import hash_key
from worker.ingest import parse_message
from worker.ingest.precedence import decide

from .samples import KEY, KEY2, KONG

CODECS = {
    "gzip": DefaultRecordBatch.CODEC_GZIP,
    "snappy": DefaultRecordBatch.CODEC_SNAPPY,
    "lz4": DefaultRecordBatch.CODEC_LZ4,
    "zstd": DefaultRecordBatch.CODEC_ZSTD,
}


def round_trip(values: list[bytes], codec: int) -> list[bytes]:
    """Values through one compressed record batch, read back the way the consumer reads it."""
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 1 << 24)
    for i, value in enumerate(values):
        assert builder.append(i, 1_795_000_000_000 + i, None, value, []) is not None
    records = MemoryRecords(bytes(builder.build()))
    out: list[bytes] = []
    while records.has_next():
        out.extend(bytes(r.value) for r in records.next_batch())
    return out


# Capped below the CI profile's 10k: each case compresses a batch with a real codec.
@pytest.mark.parametrize("codec", sorted(CODECS))
@settings(deadline=None, max_examples=100)
@given(st.lists(st.binary(max_size=400) | st.just(orjson.dumps(KONG)), min_size=1, max_size=30))
def test_compressed_batches_read_back_and_parse(codec: str, values: list[bytes]) -> None:
    assert round_trip(values, CODECS[codec]) == values
    for value in values:
        parse_message(value)  # never raises, whatever the batch carried


@settings(deadline=None, max_examples=50)  # capped: each case parses up to 3,000 elements
@given(
    st.integers(1, 3000),
    st.sampled_from([1, "x", None, [], {"hello": 1}, {**KONG, "client_ip": "nope"}]),
)
def test_huge_rejected_arrays_carry_each_element_once(n: int, element: Any) -> None:
    items = [element] * n
    result = parse_message(orjson.dumps(items))
    assert len(result.rejects) == n and result.events == []
    assert [r.index for r in result.rejects] == list(range(n))
    assert all(r.item == element for r in result.rejects)


def test_arrays_over_the_bound_are_one_reject() -> None:
    result = parse_message(orjson.dumps(list(range(100_000))), max_events=10_000)
    assert [r.reason for r in result.rejects] == ["too_many_events"]


@dataclass(frozen=True)
class Known:
    key_id: str
    account_id: str | None = None


def kong_with(authenticated: str, where: str, secret: str) -> dict[str, Any]:
    request = {**KONG["request"], "headers": dict(KONG["request"]["headers"])}
    entry = {**KONG, "authenticated_entity": {"id": authenticated}, "request": request}
    if where == "query":
        entry["request"]["uri"] = f"/v1/orders?api_key={secret}"
    elif where == "bearer":
        entry["request"]["headers"]["authorization"] = f"Bearer {secret}"
    else:
        entry["request"]["headers"][where] = secret
    return entry


@settings(deadline=None)
@given(
    st.sampled_from(["query", "bearer", "x-api-key", "apikey"]),
    st.sampled_from([KEY, KEY2]),
    st.booleans(),
    st.booleans(),
)
def test_two_credentials_never_move_the_identity(
    where: str, secret: str, second_known: bool, same_key: bool
) -> None:
    """The gateway authenticated "victim"; whatever key the client added, the event stays the
    victim's, and a different key is carried as evidence."""
    (raw,) = parse_message(orjson.dumps(kong_with("victim", where, secret))).events
    victim = Known("victim", "v")
    by_hash = victim if same_key else (Known("thief", "t") if second_known else None)
    assert decide(raw, by_hash, victim) == ("victim", "v")
    assert raw.extra_key_hash == (None if same_key else hash_key(secret))
    assert raw.key_in_query == (where == "query")

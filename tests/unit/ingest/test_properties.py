"""Property tests: whatever bytes arrive, every parser returns a ParseResult and never raises."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.ingest import FORMATS, ParseResult, parse_message

from .samples import AWS_FLAT, AWS_NESTED, ENVOY, KEY, KONG, NATIVE, TYK

SAMPLES: dict[str, dict[str, Any]] = {
    "native": NATIVE,
    "kong": KONG,
    "envoy": ENVOY,
    "aws": AWS_NESTED,
    "tyk": TYK,
}
ALL_FORMATS = ["auto", *sorted(FORMATS)]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "-",
            "",
            "REDACTED",
            "::1",
            "[::1]:80",
            "1.2.3.4:5",
            "2026-11-22T03:04:05Z",
            "22/Nov/2026:03:04:05 +0000",
            "9" * 30,
            f"Bearer {KEY}",
            KEY,
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    sorted(
        {n for s in SAMPLES.values() for n in s}
        | {
            "request.uri",
            "request.headers",
            "request.querystring",
            "identity.sourceIp",
            "x-api-key",
        }
    )
)


def _check(raw: bytes, fmt: str) -> ParseResult:
    result = parse_message(raw, fmt)
    assert isinstance(result, ParseResult)
    for event in result.events:
        assert isinstance(event.ts, float) and isinstance(event.ip, str)
        assert event.key_id is not None or event.key_hash is not None
        assert KEY not in repr(event)
    for reject in result.rejects:
        assert KEY not in reject.detail
    return result


@settings(deadline=None)
@given(st.binary(max_size=300), st.sampled_from(ALL_FORMATS))
def test_random_bytes(raw: bytes, fmt: str) -> None:
    _check(raw, fmt)


@settings(deadline=None)
@given(json_values, st.sampled_from(ALL_FORMATS))
def test_random_json(value: Any, fmt: str) -> None:
    _check(orjson.dumps(value), fmt)


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(deadline=None)
@given(data=st.data())
def test_mutated_samples(name: str, data: st.DataObject) -> None:
    """Each format's real sample with fields replaced by random values or removed."""
    event = dict(SAMPLES[name])
    for _ in range(data.draw(st.integers(1, 4))):
        field = data.draw(field_names)
        if data.draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = data.draw(json_values)
    wrap = data.draw(st.booleans())
    fmt = data.draw(st.sampled_from(["auto", name]))
    _check(orjson.dumps([event, event] if wrap else event), fmt)


@settings(deadline=None)
@given(st.integers(1, 3000), st.sampled_from(ALL_FORMATS))
def test_deep_nesting(depth: int, fmt: str) -> None:
    raw = b'{"a":' * depth + b"1" + b"}" * depth
    _check(raw, fmt)
    _check(b"[" * depth + b"]" * depth, fmt)


@settings(deadline=None)
@given(st.sampled_from(sorted(SAMPLES)), st.binary(min_size=1, max_size=8), st.integers(0, 400))
def test_invalid_utf8_and_truncation(name: str, junk: bytes, cut: int) -> None:
    raw = orjson.dumps(SAMPLES[name])
    pos = min(cut, len(raw))
    _check(raw[:pos] + junk + raw[pos:], "auto")
    _check(raw[:pos], name)


def test_large_bodies() -> None:
    big = orjson.dumps([NATIVE] * 10_000)  # ~2 MB, at the event bound: accepted
    assert len(_check(big, "auto").events) == 10_000
    over = orjson.dumps([NATIVE] * 10_001)
    assert [r.reason for r in _check(over, "auto").rejects] == ["too_many_events"]
    huge = b'{"ts": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    assert [r.reason for r in _check(huge, "auto").rejects] == ["too_large"]
    long_fields = orjson.dumps({**AWS_FLAT, "path": "/" + "a" * 100_000, "ip": "1" * 10_000})
    assert [r.reason for r in _check(long_fields, "aws").rejects] == ["invalid_ip"]
    ok = _check(
        orjson.dumps({**KONG, "request": {**KONG["request"], "uri": "/" + "b" * 9999}}), "kong"
    )
    assert len(ok.events[0].path) <= 2048

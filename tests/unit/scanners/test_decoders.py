"""Decoders: signatures, spans, limits."""

from __future__ import annotations

import base64

import pytest

from core import decoders
from core.decoders import DecodeLimits

KEY = "sk_live_Q7hZ2mKpL9vX4cR8tYw3Nb6Fs1Dg5Jk0Ue7AzR5"
LIMITS = DecodeLimits()


@pytest.mark.parametrize("pad", ["", "a", "ab", "abc:", "user:pw:"])
def test_base64_signature_found_at_every_alignment(pad: str) -> None:
    encoded = base64.b64encode((pad + KEY).encode()).decode()
    sigs = decoders.base64_signatures(b"sk_live_")
    assert any(sig in encoded for sig in sigs)


def test_urlsafe_signatures_included() -> None:
    sigs = decoders.base64_signatures(b"\xfb\xff\xfe\xfb\xff\xfe")
    assert any("-" in s or "_" in s for s in sigs)


def test_encoded_keywords_cover_all_encodings_and_depth() -> None:
    forms = decoders.encoded_keywords({"sk_live_"}, max_depth=2)
    assert forms["%5F"] == forms["%5f"] == "percent"
    assert forms["\\u005f"] == forms["\\u005F"] == "json"
    assert forms["c2tfbGl2ZV"] == "base64"
    double = base64.b64encode(base64.b64encode(b"sk_live_").decode().encode()).decode()
    assert any(f in double for f, enc in forms.items() if enc == "base64")
    assert decoders.encoded_keywords({"sk_live_"}, max_depth=0) == {}
    assert len(decoders.encoded_keywords({"sk_live_"}, 1)) < len(forms)


@pytest.mark.parametrize(
    ("span", "encoding", "expected"),
    [
        (base64.b64encode(KEY.encode()).decode(), "base64", KEY),
        (base64.b64encode(KEY.encode()).decode().rstrip("="), "base64", KEY),
        (base64.urlsafe_b64encode(b"\xff\xfe" + KEY.encode()).decode(), "base64", KEY),
        ("sk%5Flive%5Fabc", "percent", "sk_live_abc"),
        ("sk\\u005flive\\u005fabc\\/x", "json", "sk_live_abc/x"),
    ],
)
def test_decode(span: str, encoding: str, expected: str) -> None:
    decoded = decoders.decode(span, encoding, LIMITS)
    assert decoded is not None and expected in decoded


@pytest.mark.parametrize(
    ("span", "encoding"),
    [("plain", "percent"), ("plain", "json"), ("!!!", "base64"), ("x", "base64"), ("a", "rot13")],
)
def test_decode_rejects(span: str, encoding: str) -> None:
    assert decoders.decode(span, encoding, LIMITS) is None


def test_size_limit() -> None:
    small = DecodeLimits(max_bytes=100)
    blob = base64.b64encode(b"x" * 200).decode()
    assert decoders.decode(blob, "base64", small) is None
    assert decoders.decode(blob, "base64", LIMITS) is not None
    text = "k: " + blob + " end"
    assert decoders.span_around(text, 10, 15, "base64", small) is None
    assert decoders.span_around(text, 10, 15, "base64", LIMITS) == (3, 3 + len(blob))


def test_span_around_stops_at_delimiters() -> None:
    text = 'url="https://x.io/?api_key=sk%5Flive%5Fabc&x=1"'
    start = text.index("sk%5F")
    span = decoders.span_around(text, start, start + 12, "percent", LIMITS)
    assert span is not None and text[span[0] : span[1]] == "sk%5Flive%5Fabc"


def test_span_around_long_run_is_bounded() -> None:
    text = "A" * 5000 + "c2tfbGl2ZV8" + "B" * 10
    span = decoders.span_around(text, 5000, 5011, "base64", LIMITS)
    assert span == (0, len(text))

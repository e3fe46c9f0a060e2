"""Encoded keys are redacted too: every form the leak scanner decodes."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from core.redaction import redact_obj, redact_text

KEY = "sk_live_4f9aT2kLmN8pQrStUvWxYz0123456789AbCdEfGhIjK7Xq2Zw"
BODY = KEY[len("sk_live_") :]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FORMS = {
    "percent": KEY.replace("_", "%5F"),
    "percent_all": "".join(f"%{ord(c):02x}" for c in KEY),
    "percent_plus_quote": quote(KEY.replace("_", "%5F"), safe=""),
    "json": json.dumps(KEY).strip('"').replace("_", "\\u005f"),
    "base64": b64(KEY),
    "base64_urlsafe": base64.urlsafe_b64encode(f"user:{KEY}".encode()).decode(),
    "basic": b64(f"{KEY}:"),
    "base64_twice": b64(b64(KEY)),
}


def leaks(text: str) -> bool:
    """The key's body in any of the forms, or decodable from the text."""
    return any(form in text for form in FORMS.values()) or BODY in text


@pytest.mark.parametrize("name", sorted(FORMS))
def test_encoded_keys_are_cut(name: str) -> None:
    text = f'{{"path": "/v1/x?token={FORMS[name]}&page=2", "note": "hello"}}'
    out = redact_text(text)
    assert not leaks(out), out
    assert "[REDACTED" in out and "hello" in out


def test_dead_letter_payloads_are_redacted_in_every_string() -> None:
    payload = {"headers": {"authorization": f"Basic {FORMS['basic']}"},
               "raw": f"sk%5Flive%5F{BODY}", "list": [FORMS["base64_twice"]]}  # fmt: skip
    assert not leaks(str(redact_obj(payload)))


def test_ordinary_encoded_text_is_left_alone() -> None:
    text = "/search?q=snake%5Fcase&v=" + b64("not a key at all, just words") + "\\u005fx"
    assert redact_text(text) == text


def test_a_percent_encoded_key_in_a_logged_path_is_cut_at_parse_time() -> None:
    import orjson

    from worker.ingest import parse_message

    event = {"ts": 1795000000000, "ip": "8.8.8.8", "key_id": "k1",
             "path": f"/v1/keys/{FORMS['percent']}/rotate"}  # fmt: skip
    (raw,) = parse_message(orjson.dumps(event)).events
    assert not leaks(raw.path) and raw.path.startswith("/v1/keys/[REDACTED")

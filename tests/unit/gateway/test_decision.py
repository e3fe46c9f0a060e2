"""Each refusal's status, code, body and headers; allowed requests' headers."""

from __future__ import annotations

import orjson
import pytest

from gateway.decision import Decision


@pytest.mark.parametrize(
    "auth, status, code",
    [("missing", 401, "missing_api_key"), ("invalid", 401, "api_key_invalid"),
     ("revoked", 401, "api_key_revoked"), ("expired", 401, "api_key_expired"),
     ("rate_limited", 429, "rate_limit_exceeded"), ("throttled", 429, "api_key_throttled")],
)  # fmt: skip
def test_refusals(auth: str, status: int, code: str) -> None:
    d = Decision(auth, key_id="k1", key_status="active", limit=5, reset_ms=1_700_000_000_500,
                 retry_ms=1500)  # fmt: skip
    assert d.status == status and not d.allowed
    body = orjson.loads(d.body())
    assert body["error"]["code"] == code and body["error"]["message"]
    headers = dict(d.headers())
    assert "X-Keywatch-Key-Id" not in headers
    if status == 429:
        assert headers["Retry-After"] == "2"
        assert headers["X-RateLimit-Limit"] == "5"
        assert headers["X-RateLimit-Remaining"] == "0"
        assert headers["X-RateLimit-Reset"] == "1700000001"
    else:
        assert "Retry-After" not in headers


def test_allowed_deprecated_in_query() -> None:
    d = Decision(
        "ok", key_id="k1", key_status="deprecated", key_in_query=True,
        expires_at=1_800_000_000.0, limit=10, remaining=3, reset_ms=1_800_000_000_000,
    )  # fmt: skip
    h = dict(d.headers())
    assert d.status == 200
    assert h["X-Keywatch-Key-Id"] == "k1"
    assert h["X-Key-Status"] == "deprecated"
    assert h["Deprecation"] == "true"
    assert h["X-Key-Expires-At"] == "2027-01-15T08:00:00Z"
    assert h["X-Keywatch-Warning"] == "key in query string"
    assert (h["X-RateLimit-Limit"], h["X-RateLimit-Remaining"]) == ("10", "3")


def test_allowed_without_limits_has_no_ratelimit_headers() -> None:
    h = dict(Decision("ok", key_id="k1", key_status="active").headers())
    assert "X-RateLimit-Limit" not in h and "Deprecation" not in h

"""A gateway decision and how it is answered: status, headers and the contract's error body."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

import orjson

MESSAGES = {
    "missing_api_key": "No API key: send it as 'Authorization: Bearer <key>'.",
    "api_key_invalid": "The API key is not valid.",
    "api_key_revoked": "The API key has been revoked.",
    "api_key_expired": "The API key has expired.",
    "rate_limit_exceeded": "Rate limit exceeded; retry later.",
    "api_key_throttled": "The API key is throttled; retry later.",
    "key_check_unavailable": "The API key cannot be checked right now; retry later.",
}
# auth outcome -> (HTTP status, error code)
REFUSALS = {
    "missing": (401, "missing_api_key"),
    "invalid": (401, "api_key_invalid"),
    "revoked": (401, "api_key_revoked"),
    "expired": (401, "api_key_expired"),
    "rate_limited": (429, "rate_limit_exceeded"),
    "throttled": (429, "api_key_throttled"),
    "unavailable": (503, "key_check_unavailable"),
}
QUERY_WARNING = "key in query string"


@dataclass(slots=True)
class Decision:
    """What the gateway decided for one request (never holds the key itself)."""

    auth: str  # ok, missing, invalid, revoked, expired, throttled, rate_limited, unavailable
    key_id: str | None = None
    key_hash: str | None = None  # published for unknown keys only; never a header
    account_id: str | None = None
    key_status: str | None = None  # active, deprecated, revoked, expired
    key_in_query: bool = False
    expires_at: float | None = None  # deprecated keys: end of the grace period
    limit: int = 0
    remaining: int = 0
    reset_ms: int = 0
    retry_ms: int = 0
    unchecked: bool = False  # allowed by KEYWATCH_GATEWAY_FAIL_MODE=open
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        """Whether the request may go through."""
        return self.auth == "ok"

    @property
    def status(self) -> int:
        """The HTTP status of the answer (200 when allowed)."""
        return 200 if self.allowed else REFUSALS[self.auth][0]

    @property
    def code(self) -> str | None:
        """The contract's error code, None when allowed."""
        return None if self.allowed else REFUSALS[self.auth][1]

    def body(self) -> bytes:
        """``{"error": {"code", "message"}}`` for a refusal, ``{"ok": true}`` otherwise."""
        if self.allowed:
            return b'{"ok":true}'
        code = REFUSALS[self.auth][1]
        return orjson.dumps({"error": {"code": code, "message": MESSAGES[code]}})

    def headers(self) -> list[tuple[str, str]]:
        """The response headers of the contract (safe to show: ids and numbers only)."""
        out: list[tuple[str, str]] = []
        if self.allowed and self.key_id:
            out.append(("X-Keywatch-Key-Id", self.key_id))
        if self.key_status:
            out.append(("X-Key-Status", self.key_status))
        if self.key_status == "deprecated" and self.allowed:
            out.append(("Deprecation", "true"))
            if self.expires_at:
                stamp = datetime.fromtimestamp(self.expires_at, UTC)
                out.append(("X-Key-Expires-At", stamp.isoformat().replace("+00:00", "Z")))
                out.append(("Sunset", format_datetime(stamp, usegmt=True)))
        if self.limit or self.auth in ("rate_limited", "throttled"):
            out.append(("X-RateLimit-Limit", str(self.limit)))
            out.append(("X-RateLimit-Remaining", str(max(0, self.remaining))))
            out.append(("X-RateLimit-Reset", str(-(-self.reset_ms // 1000))))
        if self.auth in ("rate_limited", "throttled", "unavailable"):
            out.append(("Retry-After", str(max(1, -(-self.retry_ms // 1000)))))
        if self.key_in_query:
            out.append(("X-Keywatch-Warning", QUERY_WARNING))
        out.extend(self.extra.items())
        return out

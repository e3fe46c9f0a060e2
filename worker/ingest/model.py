"""Parsed access records, rejects and the per-message result of ``parse_message``.

A ``RawAccess`` never holds a raw key: parsers hash any key they meet at once (``key_hash``) and
strip it from the path. ``Reject.detail`` names fields and types, never field values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.errors import InputError
from detectors.model import AccessEvent


@dataclass(slots=True)
class RawAccess:
    """One gateway request as parsed, before its key is resolved against the key store."""

    ts: float
    ip: str
    key_id: str | None = None
    key_hash: str | None = None  # SHA-256 hex of the full key
    key_in_query: bool = False
    method: str = ""
    path: str = ""  # any key in the query string is redacted
    status: int = 0
    user_agent: str = ""
    request_id: str = ""
    gateway: str = ""
    account_id: str | None = None
    fmt: str = "native"
    consumer_id: str | None = None  # Kong's consumer.id: a key may be linked to it
    extra_key_hash: str | None = None  # a second key in the request (see AccessEvent)
    # keywatch gateway's verdict (ok, missing, invalid, revoked, expired, throttled,
    # rate_limited, ...); "" when the gateway does not say. Evidence for failed-auth detection.
    auth: str = ""

    def to_event(self, key_id: str, account_id: str | None = None) -> AccessEvent:
        """The detector-facing event once the key identity is known."""
        return AccessEvent(
            ts=self.ts,
            key_id=key_id,
            ip=self.ip,
            method=self.method,
            path=self.path,
            status=self.status,
            user_agent=self.user_agent,
            request_id=self.request_id,
            gateway=self.gateway,
            account_id=account_id if account_id is not None else self.account_id,
            key_in_query=self.key_in_query,
            fmt=self.fmt,
            extra_key_hash=self.extra_key_hash,
            auth=self.auth,
        )


@dataclass(frozen=True, slots=True)
class Reject:
    """Why one event (or the whole message, ``index=None``) could not be used."""

    reason: str
    detail: str = ""
    index: int | None = None  # position in a JSON array message
    # The rejected element itself, so dead-lettering it never re-parses the message.
    item: Any = field(default=None, compare=False, repr=False)
    # What the parser kept of a request without a credential (``missing_key``): evidence for
    # its client network (worker.authfail), never part of the dead letter.
    record: RawAccess | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form for the dead-letter topic."""
        return {"reason": self.reason, "detail": self.detail, "index": self.index}


@dataclass(slots=True)
class ParseResult:
    """Everything one Kafka message yielded: the format, good events and rejects."""

    fmt: str
    events: list[RawAccess] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


class Rejected(InputError):
    """Raised inside parsers for one unusable event; ``parse_message`` turns it into a Reject."""

    def __init__(self, reason: str, detail: str = "", record: RawAccess | None = None) -> None:
        super().__init__(detail or reason, reason=reason)
        self.detail = detail
        self.record = record  # what could be parsed anyway (a request without a credential)

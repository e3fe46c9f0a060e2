"""Shared value types: a normalised access event, a detector signal and an alert.

The alert's JSON form is the public contract (``Alert.to_dict``); its field names never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Severity = Literal["low", "medium", "high", "critical"]
Action = Literal["log", "notify", "throttle", "revoke"]
SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "critical": 4}
ACTION_RANK: dict[str, int] = {"log": 1, "notify": 2, "throttle": 3, "revoke": 4}


@dataclass(slots=True)
class AccessEvent:
    """One gateway request, normalised. ``ts`` is event time in epoch seconds (UTC)."""

    ts: float
    key_id: str
    ip: str
    method: str = ""
    path: str = ""
    status: int = 0
    user_agent: str = ""
    request_id: str = ""
    gateway: str = ""
    account_id: str | None = None
    key_in_query: bool = False  # the raw key travelled in the query string
    fmt: str = "native"
    # SHA-256 of a second key the request carried besides the one the gateway authenticated
    # (a header or ?api_key= the client added): evidence, never the identity.
    extra_key_hash: str | None = None
    # The gateway's verdict (keywatch gateway: ok, missing, invalid, revoked, expired,
    # throttled, rate_limited); "" when the source does not say. Failed-auth evidence.
    auth: str = ""


@dataclass(frozen=True, slots=True)
class Signal:
    """One detector finding with the evidence a person needs to judge it."""

    type: str
    severity: Severity
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape."""
        return {"type": self.type, "severity": self.severity, "evidence": self.evidence}


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds and a trailing Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Alert:
    """An alert as published on ``keywatch.alerts`` (and derived into Slack/webhook bodies)."""

    id: str
    kind: Literal["anomaly", "leak", "auth_abuse"]
    key_id: str | None
    account_id: str | None
    ts: float
    detected_at: float
    severity: Severity
    action: Action
    signals: list[Signal]
    summary: str
    extra: dict[str, Any] = field(default_factory=dict)  # leak fields, incident counts, ...

    def to_dict(self) -> dict[str, Any]:
        """The contract's JSON shape; ``extra`` fields are merged at the top level."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "key_id": self.key_id,
            "account_id": self.account_id,
            "ts": iso(self.ts),
            "detected_at": iso(self.detected_at),
            "severity": self.severity,
            "action": self.action,
            "signals": [s.to_dict() for s in self.signals],
            "summary": self.summary,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True, slots=True)
class KeyContext:
    """What the policy may know about a key (from the key store; unknown keys get defaults)."""

    key_id: str
    account_id: str | None = None
    environment: str = "live"  # live | test
    status: str = "active"


@dataclass(frozen=True, slots=True)
class GeoInfo:
    """Where an IP is, as far as the GeoIP databases know."""

    country: str | None = None  # ISO 3166-1 alpha-2
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_km: float | None = None
    asn: int | None = None
    asn_org: str | None = None
    # Appended (positional constructors keep working): the ASN's class (geoip.netclass:
    # hosting, vpn, tor, isp; None without an ASN) and the client network (IPv4 /24, IPv6 /48).
    net_class: str | None = None
    network: str | None = None

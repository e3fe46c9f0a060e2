"""Escalation policy: signals on one key -> severity -> action.

``Policy`` is the interface the analyzer and the alert path use; ``DefaultPolicy`` is the
built-in rule set (low/medium -> log/notify, high -> throttle, critical -> revoke, where critical
means two or more independent signals within the incident window, or a verified leak).
The rules-as-data policy (TOML, allowlists, log-only detectors, dry-run) implements the same
interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from detectors.model import (
    SEVERITY_RANK,
    AccessEvent,
    Action,
    GeoInfo,
    KeyContext,
    Severity,
    Signal,
)

_DEFAULT_ACTIONS: dict[str, Action] = {
    "low": "log",
    "medium": "notify",
    "high": "throttle",
    "critical": "revoke",
}


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict for one alert."""

    severity: Severity
    action: Action
    reasons: tuple[str, ...] = field(default_factory=tuple)


class Policy(Protocol):
    """Decides severity and action for the signals open on one key."""

    def decide(
        self,
        key: KeyContext,
        signals: Sequence[Signal],
        event: AccessEvent | None = None,
        geo: GeoInfo | None = None,
    ) -> Decision:
        """``signals``: every signal open on the key within the incident window, newest last."""
        ...


def combined_severity(signals: Sequence[Signal]) -> Severity:
    """The highest severity, raised to critical by two or more independent signal types."""
    if not signals:
        return "low"
    if any(s.severity == "critical" for s in signals):
        return "critical"
    if len({s.type for s in signals}) >= 2 and any(s.severity != "low" for s in signals):
        return "critical"
    return max((s.severity for s in signals), key=SEVERITY_RANK.__getitem__)


class DefaultPolicy:
    """The built-in policy: severity by combination, action by severity; test keys never revoked."""

    def decide(
        self,
        key: KeyContext,
        signals: Sequence[Signal],
        event: AccessEvent | None = None,
        geo: GeoInfo | None = None,
    ) -> Decision:
        """Apply the default escalation."""
        severity = combined_severity(signals)
        action = _DEFAULT_ACTIONS[severity]
        reasons: tuple[str, ...] = ()
        if action == "revoke" and key.environment == "test":
            action, reasons = "notify", ("test keys are never auto-revoked",)
        return Decision(severity, action, reasons)

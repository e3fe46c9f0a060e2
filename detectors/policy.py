"""Escalation policy: signals on one key -> severity -> action, as data.

``Policy`` is the interface the analyzer and the alert path use. ``RulesPolicy`` implements it
from TOML (``detectors/policy_default.toml`` built in, or ``KEYWATCH_POLICY``), loaded once by
``detectors.policy_file.load_policy`` and validated there against a typed schema;
``DefaultPolicy`` is the built-in file. Alert routing and delivery settings are in
``detectors.routing``. The decision procedure is documented at the top of
``policy_default.toml``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from detectors.model import (
    ACTION_RANK,
    SEVERITY_RANK,
    AccessEvent,
    Action,
    GeoInfo,
    KeyContext,
    Severity,
    Signal,
)
from detectors.registry import signal_types
from detectors.routing import Delivery, Routing

Mode = Literal["enforce", "log"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Every signal type keywatch raises, derived from the detector registry (one list, not two).
KNOWN_SIGNAL_TYPES = signal_types()


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


@dataclass(frozen=True, slots=True)
class SignalRule:
    """How one detector's signals count: enforced or log-only, and their independence group."""

    mode: Mode = "enforce"
    group: str = ""


@dataclass(frozen=True, slots=True)
class AllowEntry:
    """An allowlist entry: signals it matches (by CIDR, ASN or country) do not count."""

    networks: tuple[Network, ...] = ()
    asns: frozenset[int] = frozenset()
    countries: frozenset[str] = frozenset()
    account: str | None = None
    key: str | None = None
    signals: frozenset[str] = frozenset()  # empty: every signal type
    note: str = ""

    def covers(self, key: KeyContext, signal: Signal) -> bool:
        """Whether this entry's scope (account, key, signal types) includes the signal."""
        if self.account is not None and key.account_id != self.account:
            return False
        if self.key is not None and key.key_id != self.key:
            return False
        return not self.signals or signal.type in self.signals

    def matches(self, ip: str | None, asn: int | None, country: str | None) -> bool:
        """Whether the origin (IP, ASN, country) is allowlisted."""
        if country is not None and country.upper() in self.countries:
            return True
        if asn is not None and asn in self.asns:
            return True
        if ip and self.networks:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return False
            return any(addr in net for net in self.networks)
        return False


Pair = frozenset[str]


@dataclass(frozen=True, slots=True)
class CriticalRule:
    """Which combinations of independent evidence raise the severity (see policy_default.toml)."""

    always: frozenset[str] = frozenset({"leak.public_code"})
    # Pairs of signal groups: both present (within window_s) -> at least that severity.
    critical: tuple[Pair, ...] = (
        frozenset({"location", "volume"}),
        frozenset({"spread", "volume"}),
        frozenset({"location", "spread"}),
    )
    high: tuple[Pair, ...] = (frozenset({"volume", "client"}),)
    medium: tuple[Pair, ...] = (frozenset({"location", "client"}),)


@dataclass(frozen=True, slots=True)
class RulesPolicy:
    """A policy loaded from TOML; ``decide`` is pure and explains itself in ``reasons``."""

    actions: Mapping[str, Action]
    critical: CriticalRule = field(default_factory=CriticalRule)
    signals: Mapping[str, SignalRule] = field(default_factory=dict)
    allow: tuple[AllowEntry, ...] = ()
    routing: Routing = field(default_factory=dict)
    delivery: Delivery = field(default_factory=Delivery)
    test_max_action: Action = "notify"
    dry_run: bool = False
    window_s: float = 3600.0
    throttle_ttl_s: float = 3600.0
    source: str = "built-in"

    def decide(
        self,
        key: KeyContext,
        signals: Sequence[Signal],
        event: AccessEvent | None = None,
        geo: GeoInfo | None = None,
    ) -> Decision:
        """Severity from the counted signals, action from the severity, then the caps."""
        reasons: list[str] = []
        now = event.ts if event is not None else None
        counted = [
            s for s in signals
            if self._fresh(s, now, reasons) and self._counts(key, s, event, geo, reasons)
        ]  # fmt: skip
        if not counted:
            severity = _max_severity(signals)
            reasons.append("no signal counts: log only")
            return Decision(severity, "log", tuple(reasons))
        severity = self._severity(counted, reasons)
        action = self._cap(key, self.actions[severity], reasons)
        return Decision(severity, action, tuple(reasons))

    def with_dry_run(self, dry_run: bool) -> RulesPolicy:
        """A copy with dry-run switched on (``KEYWATCH_DRY_RUN`` wins over the file when on)."""
        return replace(self, dry_run=self.dry_run or dry_run)

    def rule(self, signal_type: str) -> SignalRule:
        """The rule for a signal type; unknown (new) detectors start in log-only mode."""
        return self.signals.get(signal_type) or SignalRule("log", signal_type)

    def _fresh(self, signal: Signal, now: float | None, reasons: list[str]) -> bool:
        """An open incident whose last evidence is older than ``window_s`` no longer combines."""
        last = signal.evidence.get("last_seen")
        if now is None or not isinstance(last, (int, float)) or now - last <= self.window_s:
            return True
        reasons.append(f"{signal.type}: last seen {round(now - last)} s ago (> window_s)")
        return False

    def _counts(
        self,
        key: KeyContext,
        signal: Signal,
        event: AccessEvent | None,
        geo: GeoInfo | None,
        reasons: list[str],
    ) -> bool:
        if self.rule(signal.type).mode == "log":
            reasons.append(f"{signal.type}: log-only")
            return False
        ip, asn, country = _origin(signal, event, geo)
        for entry in self.allow:
            if entry.covers(key, signal) and entry.matches(ip, asn, country):
                reasons.append(f"{signal.type}: allowlisted ({entry.note or 'allow'})")
                return False
        return True

    def _severity(self, counted: Sequence[Signal], reasons: list[str]) -> Severity:
        rule = self.critical
        for s in counted:
            if s.severity == "critical" or s.type in rule.always:
                reasons.append(f"critical: {s.type}")
                return "critical"
        groups = {self.rule(s.type).group or s.type for s in counted}
        for level, pairs in (("critical", rule.critical), ("high", rule.high),
                             ("medium", rule.medium)):  # fmt: skip
            for pair in pairs:
                if pair <= groups:
                    reasons.append(f"{level}: independent evidence ({' + '.join(sorted(pair))})")
                    best = _max_severity(counted)
                    return best if SEVERITY_RANK[best] > SEVERITY_RANK[level] else level  # type: ignore[return-value]
        severity = _max_severity(counted)
        reasons.append(f"{severity}: highest counted signal")
        return severity

    def _cap(self, key: KeyContext, action: Action, reasons: list[str]) -> Action:
        if key.environment == "test" and ACTION_RANK[action] > ACTION_RANK[self.test_max_action]:
            reasons.append(f"test key: {action} capped at {self.test_max_action}")
            action = self.test_max_action
        if self.dry_run and action in ("throttle", "revoke"):
            reasons.append(f"dry-run: would {action}")
            action = "notify"
        return action


def _max_severity(signals: Sequence[Signal]) -> Severity:
    if not signals:
        return "low"
    return max((s.severity for s in signals), key=SEVERITY_RANK.__getitem__)


def _origin(
    signal: Signal, event: AccessEvent | None, geo: GeoInfo | None
) -> tuple[str | None, int | None, str | None]:
    """Where the signal's request came from: its evidence first, then the current event."""
    ev = signal.evidence
    ip = ev.get("ip") if isinstance(ev.get("ip"), str) else (event.ip if event else None)
    asn_raw = ev.get("asn")
    asn = asn_raw if isinstance(asn_raw, int) else (geo.asn if geo else None)
    country_raw = ev.get("country")
    country = country_raw if isinstance(country_raw, str) else (geo.country if geo else None)
    return ip, asn, country


def combined_severity(signals: Sequence[Signal]) -> Severity:
    """The severity the built-in policy gives these signals (no allowlists, nothing log-only)."""
    return DefaultPolicy().decide(KeyContext("-"), signals).severity


class DefaultPolicy:
    """The built-in policy (``policy_default.toml``) behind the historical name."""

    def __init__(self, *, dry_run: bool = False) -> None:
        from detectors.policy_file import built_in  # the loader builds this module's classes

        self.rules = built_in().with_dry_run(dry_run)

    def decide(
        self,
        key: KeyContext,
        signals: Sequence[Signal],
        event: AccessEvent | None = None,
        geo: GeoInfo | None = None,
    ) -> Decision:
        """Apply the built-in rules."""
        return self.rules.decide(key, signals, event, geo)

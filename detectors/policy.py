"""Escalation policy: signals on one key -> severity -> action, as data.

``Policy`` is the interface the analyzer and the alert path use. ``RulesPolicy`` implements it
from TOML (``detectors/policy_default.toml`` built in, or ``KEYWATCH_POLICY``), loaded once by
``load_policy`` and validated with ``ConfigError``; ``DefaultPolicy`` is the built-in file.
The decision procedure is documented at the top of ``policy_default.toml``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

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
from worker.errors import ConfigError

Mode = Literal["enforce", "log"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Every signal type keywatch raises, derived from the detector registry (one list, not two).
KNOWN_SIGNAL_TYPES = signal_types()
SINKS = ("slack", "webhook", "pagerduty")
DEFAULT_POLICY_FILE = "policy_default.toml"


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
class DeliveryConfig:
    """Retry and rate settings for alert delivery."""

    max_attempts: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    max_total_s: float = 300.0
    slack_min_interval_s: float = 1.0


@dataclass(frozen=True, slots=True)
class RulesPolicy:
    """A policy loaded from TOML; ``decide`` is pure and explains itself in ``reasons``."""

    actions: Mapping[str, Action]
    critical: CriticalRule = field(default_factory=CriticalRule)
    signals: Mapping[str, SignalRule] = field(default_factory=dict)
    allow: tuple[AllowEntry, ...] = ()
    routing: Mapping[str, Severity] = field(default_factory=dict)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
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


def load_policy(path: Path | None = None, *, dry_run: bool = False) -> RulesPolicy:
    """The built-in policy, or the TOML file at ``path``; ``ConfigError`` explains what is wrong."""
    if path is None:
        return parse_policy(_built_in_data(), "built-in", on_defaults=False).with_dry_run(dry_run)
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy {path}: cannot read: {exc}") from exc
    source = str(path)
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy {source}: not valid TOML: {exc}") from exc
    return parse_policy(data, source).with_dry_run(dry_run)


_BUILT_IN: RulesPolicy | None = None


def _built_in() -> RulesPolicy:
    global _BUILT_IN  # the packaged file never changes: parse it once per process
    if _BUILT_IN is None:
        _BUILT_IN = load_policy()
    return _BUILT_IN


class DefaultPolicy:
    """The built-in policy (``policy_default.toml``) behind the historical name."""

    def __init__(self, *, dry_run: bool = False) -> None:
        self.rules = _built_in().with_dry_run(dry_run)

    def decide(
        self,
        key: KeyContext,
        signals: Sequence[Signal],
        event: AccessEvent | None = None,
        geo: GeoInfo | None = None,
    ) -> Decision:
        """Apply the built-in rules."""
        return self.rules.decide(key, signals, event, geo)


# -- parsing and validation -------------------------------------------------------------------

_TOP_KEYS = frozenset(
    {"version", "dry_run", "window_s", "throttle_ttl_s", "actions", "critical", "test_keys",
     "signals", "allow", "routing", "delivery"}
)  # fmt: skip
_SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")
_ACTIONS: tuple[Action, ...] = ("log", "notify", "throttle", "revoke")
_MODES: tuple[Mode, ...] = ("enforce", "log")
_T = TypeVar("_T")


class _Reader:
    """Typed access to one TOML table, with the table's path in every error message."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"policy {source}: {where} must be a table")
        self.data: dict[str, Any] = data
        self.where, self.source = where, source

    def fail(self, name: str, message: str) -> ConfigError:
        """A ConfigError naming the file and the offending key."""
        return ConfigError(f"policy {self.source}: {self.where}{name}: {message}")

    def only(self, allowed: frozenset[str]) -> None:
        """Reject keys this table does not know (typos would silently do nothing)."""
        for name in self.data:
            if name not in allowed:
                raise self.fail(name, f"unknown setting (known: {', '.join(sorted(allowed))})")

    def get(self, name: str, kind: type[_T], default: _T) -> _T:
        """``name`` as ``kind`` (int accepted for float), or the default."""
        value = self.data.get(name, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(name, f"must be {kind.__name__}, got {value!r}")
        return value

    def positive(self, name: str, default: float) -> float:
        """A number > 0."""
        value = self.get(name, float, default)
        if not value > 0:
            raise self.fail(name, f"must be > 0, got {value!r}")
        return value

    def choice(self, name: str, choices: tuple[_T, ...], default: _T) -> _T:
        """One of ``choices``."""
        value = self.data.get(name, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
        return cast_choice(value, choices)

    def strings(self, name: str) -> list[str]:
        """A list of strings (empty when absent)."""
        value = self.data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, "must be a list of strings")
        return list(value)

    def table(self, name: str) -> _Reader:
        """A sub-table (empty when absent)."""
        return _Reader(self.data.get(name, {}), f"{self.where}{name}.", self.source)


def cast_choice(value: Any, choices: tuple[_T, ...]) -> _T:
    """The element of ``choices`` equal to ``value`` (typed)."""
    return choices[choices.index(value)]


def _signal_type(r: _Reader, name: str, value: str) -> str:
    if value not in KNOWN_SIGNAL_TYPES:
        known = ", ".join(sorted(KNOWN_SIGNAL_TYPES))
        raise r.fail(name, f"unknown signal type {value!r} (known: {known})")
    return value


def _parse_actions(r: _Reader) -> dict[str, Action]:
    r.only(frozenset(_SEVERITIES))
    defaults: dict[Severity, Action] = {
        "low": "log", "medium": "notify", "high": "throttle", "critical": "revoke",
    }  # fmt: skip
    return {sev: r.choice(sev, _ACTIONS, defaults[sev]) for sev in _SEVERITIES}


_LEGACY_CRITICAL = frozenset({"min_independent", "anchor_severity", "anchor_types"})


def _pairs(r: _Reader, name: str, default: tuple[Pair, ...]) -> tuple[Pair, ...]:
    value = r.data.get(name)
    if value is None:
        return default
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(g, str) and g for g in p)
        for p in value
    ):
        raise r.fail(name, 'must be a list of group pairs, e.g. [["location", "volume"]]')
    return tuple(frozenset(p) for p in value)


def _parse_critical(r: _Reader) -> CriticalRule:
    for name in r.data:
        if name in _LEGACY_CRITICAL:
            raise r.fail(
                name, "replaced by pairs, high_pairs, medium_pairs (see the built-in policy)"
            )
    r.only(frozenset({"always", "pairs", "high_pairs", "medium_pairs"}))
    base = CriticalRule()
    always = r.strings("always") if "always" in r.data else base.always
    return CriticalRule(
        always=frozenset(_signal_type(r, "always", t) for t in always),
        critical=_pairs(r, "pairs", base.critical),
        high=_pairs(r, "high_pairs", base.high),
        medium=_pairs(r, "medium_pairs", base.medium),
    )


def _parse_signals(r: _Reader) -> dict[str, SignalRule]:
    rules: dict[str, SignalRule] = {}
    for name in r.data:
        _signal_type(r, name, name)
        sub = r.table(name)
        sub.only(frozenset({"mode", "group"}))
        mode = sub.choice("mode", _MODES, "enforce")
        rules[name] = SignalRule(mode, sub.get("group", str, name) or name)
    return rules


def _parse_allow(entries: Any, source: str) -> tuple[AllowEntry, ...]:
    if not isinstance(entries, list):
        raise ConfigError(f"policy {source}: allow must be an array of tables ([[allow]])")
    out = []
    for i, raw in enumerate(entries):
        r = _Reader(raw, f"allow[{i}].", source)
        r.only(frozenset({"cidrs", "asns", "countries", "account", "key", "signals", "note"}))
        networks = []
        for cidr in r.strings("cidrs"):
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError as exc:
                raise r.fail("cidrs", f"bad CIDR {cidr!r}: {exc}") from exc
        asns = r.data.get("asns", [])
        if not isinstance(asns, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) and 0 <= a < 2**32 for a in asns
        ):
            raise r.fail("asns", "must be a list of AS numbers (integers)")
        countries = [c.upper() for c in r.strings("countries")]
        if any(len(c) != 2 or not c.isalpha() for c in countries):
            raise r.fail("countries", "must be ISO 3166-1 alpha-2 codes such as 'DE'")
        if not (networks or asns or countries):
            raise r.fail("", "needs at least one of cidrs, asns, countries")
        out.append(AllowEntry(
            networks=tuple(networks), asns=frozenset(asns), countries=frozenset(countries),
            account=r.get("account", str, "") or None, key=r.get("key", str, "") or None,
            signals=frozenset(_signal_type(r, "signals", t) for t in r.strings("signals")),
            note=r.get("note", str, ""),
        ))  # fmt: skip
    return tuple(out)


def _parse_routing(r: _Reader) -> dict[str, Severity]:
    r.only(frozenset(SINKS))
    defaults: dict[str, Severity] = {"slack": "medium", "webhook": "low", "pagerduty": "high"}
    return {sink: r.choice(sink, _SEVERITIES, defaults[sink]) for sink in SINKS}


def _parse_delivery(r: _Reader) -> DeliveryConfig:
    base = DeliveryConfig()
    r.only(frozenset(DeliveryConfig.__slots__))
    attempts = r.get("max_attempts", int, base.max_attempts)
    if attempts < 1:
        raise r.fail("max_attempts", "must be >= 1")
    return DeliveryConfig(
        max_attempts=attempts,
        base_delay_s=r.positive("base_delay_s", base.base_delay_s),
        max_delay_s=r.positive("max_delay_s", base.max_delay_s),
        max_total_s=r.positive("max_total_s", base.max_total_s),
        slack_min_interval_s=r.get("slack_min_interval_s", float, base.slack_min_interval_s),
    )


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: tables merge key by key, anything else is replaced."""
    out = dict(base)
    for name, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(name), dict):
            out[name] = _merged(out[name], value)
        else:
            out[name] = value
    return out


def _built_in_data() -> dict[str, Any]:
    text = resources.files("detectors").joinpath(DEFAULT_POLICY_FILE).read_text("utf-8")
    return tomllib.loads(text)


def parse_policy(
    data: dict[str, Any], source: str = "<policy>", *, on_defaults: bool = True
) -> RulesPolicy:
    """Validate a parsed TOML document and build the policy; ``ConfigError`` on any mistake.

    With ``on_defaults`` the document is laid over the built-in policy (a file states only what
    it changes; ``[[allow]]`` and other arrays replace the built-in ones).
    """
    if on_defaults:
        r0 = _Reader(data, "", source)  # the shape is checked before merging
        r0.only(_TOP_KEYS)
        data = _merged(_built_in_data(), data)
    r = _Reader(data, "", source)
    r.only(_TOP_KEYS)
    if r.get("version", int, 1) != 1:
        raise r.fail("version", "only version 1 is supported")
    test = r.table("test_keys")
    test.only(frozenset({"max_action"}))
    return RulesPolicy(
        actions=_parse_actions(r.table("actions")),
        critical=_parse_critical(r.table("critical")),
        signals=_parse_signals(r.table("signals")),
        allow=_parse_allow(data.get("allow", []), source),
        routing=_parse_routing(r.table("routing")),
        delivery=_parse_delivery(r.table("delivery")),
        test_max_action=test.choice("max_action", _ACTIONS, "notify"),
        dry_run=r.get("dry_run", bool, False),
        window_s=r.positive("window_s", 3600.0),
        throttle_ttl_s=r.positive("throttle_ttl_s", 3600.0),
        source=source,
    )

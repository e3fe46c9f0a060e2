"""The policy file: its typed schema, and loading it into a ``RulesPolicy`` once.

``detectors/policy_default.toml`` is built in; ``KEYWATCH_POLICY`` names a file laid over it
(a file states only what it changes; ``[[allow]]`` and other arrays replace the built-in ones).
Every mistake is a ``ConfigError`` naming the file and the path
(``p.toml: signals."usage.spike".mode: expected one of enforce, log, got "silent"``).
"""

from __future__ import annotations

import ipaddress
import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from core.errors import ConfigError
from core.schema import convert, fail, shown
from detectors.model import Action
from detectors.policy import (
    KNOWN_SIGNAL_TYPES,
    AllowEntry,
    CriticalRule,
    Mode,
    Network,
    Pair,
    RulesPolicy,
    SignalRule,
)
from detectors.routing import Delivery, RoutingTable

DEFAULT_POLICY_FILE = "policy_default.toml"
Positive = Annotated[float, msgspec.Meta(gt=0)]
Group = Annotated[str, msgspec.Meta(min_length=1)]
GroupPair = Annotated[list[Group], msgspec.Meta(min_length=2, max_length=2)]
Asn = Annotated[int, msgspec.Meta(ge=0, lt=2**32)]
_LEGACY_CRITICAL = ("min_independent", "anchor_severity", "anchor_types")


class ActionsTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[actions]``: the action for each severity."""

    low: Action = "log"
    medium: Action = "notify"
    high: Action = "throttle"
    critical: Action = "revoke"


class CriticalTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[critical]``: the combinations of independent evidence that raise the severity."""

    always: list[str] | None = None  # signal types (checked against the registry)
    pairs: list[GroupPair] | None = None
    high_pairs: list[GroupPair] | None = None
    medium_pairs: list[GroupPair] | None = None


class SignalTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[signals."type"]``: enforced or log-only, and the independence group."""

    mode: Mode = "enforce"
    group: str = ""


class AllowTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One ``[[allow]]`` entry (at least one of cidrs, asns, countries)."""

    cidrs: list[str] = []
    asns: list[Asn] = []
    countries: list[str] = []
    account: str = ""
    key: str = ""
    signals: list[str] = []
    note: str = ""


class TestKeysTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[test_keys]``: the strongest action a test key can get."""

    max_action: Action = "notify"


class PolicyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A policy file as written (the schema; ``_build`` adds the checks across fields)."""

    version: Literal[1] = 1
    dry_run: bool = False
    window_s: Positive = 3600.0
    throttle_ttl_s: Positive = 3600.0
    actions: ActionsTable = msgspec.field(default_factory=ActionsTable)
    critical: CriticalTable = msgspec.field(default_factory=CriticalTable)
    test_keys: TestKeysTable = msgspec.field(default_factory=TestKeysTable)
    signals: dict[str, SignalTable] = {}
    allow: list[AllowTable] = []
    routing: RoutingTable = msgspec.field(default_factory=RoutingTable)
    delivery: Delivery = msgspec.field(default_factory=Delivery)


def load_policy(path: Path | None = None, *, dry_run: bool = False) -> RulesPolicy:
    """The built-in policy, or the TOML file at ``path``; ``ConfigError`` explains what is wrong."""
    if path is None:
        return parse_policy(_built_in_data(), "built-in", on_defaults=False).with_dry_run(dry_run)
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the policy file: {exc}") from exc
    source = str(path)
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    return parse_policy(data, source).with_dry_run(dry_run)


_BUILT_IN: RulesPolicy | None = None


def built_in() -> RulesPolicy:
    """The built-in policy, parsed once per process (the packaged file never changes)."""
    global _BUILT_IN
    if _BUILT_IN is None:
        _BUILT_IN = load_policy()
    return _BUILT_IN


def parse_policy(
    data: dict[str, Any], source: str = "<policy>", *, on_defaults: bool = True
) -> RulesPolicy:
    """Validate a parsed TOML document and build the policy; ``ConfigError`` on any mistake.

    With ``on_defaults`` the document is laid over the built-in policy (a file states only what
    it changes; ``[[allow]]`` and other arrays replace the built-in ones).
    """
    _check_legacy(data, source)
    spec = convert(data, PolicyFile, source)  # the file alone first: errors name its content
    if on_defaults:
        spec = convert(_merged(_built_in_data(), data), PolicyFile, source)
    return _build(spec, source)


def _check_legacy(data: dict[str, Any], source: str) -> None:
    critical = data.get("critical")
    for name in _LEGACY_CRITICAL:
        if isinstance(critical, dict) and name in critical:
            hint = "replaced by pairs, high_pairs, medium_pairs (see the built-in policy)"
            raise fail(source, ["critical", name], hint)


def _build(spec: PolicyFile, source: str) -> RulesPolicy:
    actions = spec.actions
    return RulesPolicy(
        actions={
            "low": actions.low,
            "medium": actions.medium,
            "high": actions.high,
            "critical": actions.critical,
        },
        critical=_critical(spec.critical, source),
        signals=_signals(spec.signals, source),
        allow=tuple(_allow(entry, i, source) for i, entry in enumerate(spec.allow)),
        routing=spec.routing.routing(),
        delivery=spec.delivery,
        test_max_action=spec.test_keys.max_action,
        dry_run=spec.dry_run,
        window_s=spec.window_s,
        throttle_ttl_s=spec.throttle_ttl_s,
        source=source,
    )


def _signal_type(value: str, source: str, *path: str | int) -> str:
    if value not in KNOWN_SIGNAL_TYPES:
        known = ", ".join(sorted(KNOWN_SIGNAL_TYPES))
        raise fail(source, path, f"unknown signal type {shown(value)} (known: {known})")
    return value


def _pairs(value: list[list[str]] | None, default: tuple[Pair, ...]) -> tuple[Pair, ...]:
    return default if value is None else tuple(frozenset(p) for p in value)


def _critical(table: CriticalTable, source: str) -> CriticalRule:
    base = CriticalRule()
    always = base.always if table.always is None else frozenset(
        _signal_type(t, source, "critical", "always", i) for i, t in enumerate(table.always)
    )  # fmt: skip
    return CriticalRule(
        always=always,
        critical=_pairs(table.pairs, base.critical),
        high=_pairs(table.high_pairs, base.high),
        medium=_pairs(table.medium_pairs, base.medium),
    )


def _signals(tables: dict[str, SignalTable], source: str) -> dict[str, SignalRule]:
    return {
        _signal_type(name, source, "signals", name): SignalRule(t.mode, t.group or name)
        for name, t in tables.items()
    }


def _allow(entry: AllowTable, i: int, source: str) -> AllowEntry:
    networks: list[Network] = []
    for n, cidr in enumerate(entry.cidrs):
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise fail(source, ["allow", i, "cidrs", n], f"bad CIDR {shown(cidr)}: {exc}") from exc
    for n, c in enumerate(entry.countries):
        if len(c) != 2 or not c.isalpha():
            hint = f'expected an ISO 3166-1 alpha-2 code such as "DE", got {shown(c)}'
            raise fail(source, ["allow", i, "countries", n], hint)
    countries = [c.upper() for c in entry.countries]
    if not (networks or entry.asns or countries):
        raise fail(source, ["allow", i], "needs at least one of cidrs, asns, countries")
    types = [_signal_type(t, source, "allow", i, "signals", n) for n, t in enumerate(entry.signals)]
    return AllowEntry(
        networks=tuple(networks), asns=frozenset(entry.asns), countries=frozenset(countries),
        account=entry.account or None, key=entry.key or None, signals=frozenset(types),
        note=entry.note,
    )  # fmt: skip


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

"""The escalation policy as data: combinations, allowlists, log-only, test keys, dry-run, errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.errors import ConfigError
from detectors.model import AccessEvent, GeoInfo, KeyContext, Signal
from detectors.policy import DefaultPolicy, combined_severity
from detectors.policy_file import load_policy, parse_policy
from detectors.registry import signal_types

LIVE = KeyContext("k1", "acme", "live")
TEST = KeyContext("k2", "acme", "test")

NC = Signal("geo.new_country", "medium", {"country": "RU", "known": ["DE"]})
NC_SEEN = Signal("geo.new_country", "low", {"country": "RU", "known": ["DE"], "seen_days": 2})
PLACE = Signal("geo.new_place", "low", {"place": "DE/Frankfurt", "country": "DE"})
IT = Signal("geo.impossible_travel", "high", {"km_per_h": 4200})
SPIKE = Signal("usage.spike", "low", {"observed_per_5min": 1210, "ratio": 40.0})
SPIKE_MED = Signal("usage.spike", "medium", {"observed_per_hour": 9000, "ratio": 90.0})
OFF = Signal("time.off_hours", "low", {"hour": 3})
ASN = Signal("network.new_asn", "low", {"asn": 64501})
SPREAD = Signal("network.spread", "high", {"countries_this_hour": 5})
UA = Signal("client.new_user_agent", "low", {"agent": "python-requests"})
QUERY = Signal("transport.key_in_query", "low", {})
LEAK = Signal("leak.public_code", "critical", {"repository": "o/r"})


@pytest.mark.parametrize(
    ("signals", "severity", "action"),
    [
        ([], "low", "log"),
        ([OFF], "low", "log"),
        ([ASN], "low", "log"),
        ([PLACE], "low", "log"),  # a new city in a known country: people move
        ([UA], "low", "log"),
        ([SPIKE], "low", "log"),  # volume alone (a first weekly batch) is logged
        ([SPIKE_MED], "medium", "notify"),  # ... and notified once it persists
        ([NC], "medium", "notify"),
        ([QUERY], "low", "log"),  # hygiene: reported, never escalates
        ([NC, QUERY], "medium", "notify"),  # key in query does not make a new country critical
        ([IT], "high", "throttle"),
        ([SPREAD], "high", "throttle"),
        ([NC, SPIKE], "critical", "revoke"),  # new place + abnormal volume
        ([NC_SEEN, SPIKE], "critical", "revoke"),  # probed days before: still not established
        ([PLACE, SPIKE], "critical", "revoke"),  # a cloud VM in the victim's country, flooding
        ([IT, SPIKE], "critical", "revoke"),
        ([SPREAD, SPIKE], "critical", "revoke"),  # distributed abuse
        ([SPREAD, NC], "critical", "revoke"),
        ([NC, OFF, SPIKE], "critical", "revoke"),
        ([NC, OFF], "medium", "notify"),  # a traveller working late: never critical
        ([NC_SEEN, OFF], "low", "log"),  # the traveller's second day
        ([NC_SEEN, UA], "medium", "notify"),  # new place + new client
        ([SPIKE, UA], "high", "throttle"),  # flood by a new client
        ([OFF, SPIKE], "low", "log"),  # a batch at night from home
        ([OFF, SPIKE_MED], "medium", "notify"),
        ([NC, ASN], "medium", "notify"),  # one "location" observation
        ([NC, IT], "high", "throttle"),  # both location: not independent
        ([SPIKE, SPIKE], "low", "log"),  # the same type twice is one signal
        ([LEAK], "critical", "revoke"),
        ([Signal("leak.public_code", "high")], "critical", "revoke"),  # verified leak always
    ],
)
def test_default_combinations(signals: list[Signal], severity: str, action: str) -> None:
    decision = DefaultPolicy().decide(LIVE, signals)
    assert (decision.severity, decision.action) == (severity, action)
    assert decision.reasons
    assert combined_severity(signals) == severity


@pytest.mark.parametrize(
    ("signals", "action"),
    [([LEAK], "notify"), ([NC, SPIKE], "notify"), ([IT], "notify"), ([OFF], "log")],
)
def test_test_keys_never_revoked_nor_throttled(signals: list[Signal], action: str) -> None:
    decision = DefaultPolicy().decide(TEST, signals)
    assert decision.action == action
    if action == "notify":
        assert any("test key" in r for r in decision.reasons)


def test_log_only_detector_never_escalates() -> None:
    policy = load_policy().__class__  # the same class, built from a file below
    p = parse_policy(tomllib.loads('[signals."usage.spike"]\nmode = "log"\n'), "t")
    assert isinstance(p, policy)
    d = p.decide(LIVE, [NC, SPIKE])  # the spike is recorded but does not combine
    assert (d.severity, d.action) == ("medium", "notify")
    assert p.decide(LIVE, [SPIKE_MED]).action == "log"
    assert "usage.spike: log-only" in d.reasons


def test_unknown_runtime_signal_type_starts_log_only() -> None:
    d = DefaultPolicy().decide(LIVE, [Signal("usage.new_thing", "high"), NC])
    assert (d.severity, d.action) == ("medium", "notify")


ALLOW = """
[[allow]]
note = "office"
cidrs = ["198.51.100.0/24", "2001:db8::/32"]
[[allow]]
note = "acme travels to RU"
countries = ["ru"]
account = "acme"
signals = ["geo.new_country"]
[[allow]]
note = "one key on a VPN"
asns = [64501]
key = "k9"
"""


@pytest.mark.parametrize(
    ("key", "signals", "ip", "geo", "action", "why"),
    [
        (LIVE, [NC, SPIKE], "198.51.100.7", GeoInfo("RU"), "log", "office"),
        (LIVE, [NC, SPIKE], "2001:db8::1", GeoInfo("RU"), "log", "office"),
        (LIVE, [NC, SPIKE_MED], "203.0.113.9", GeoInfo("RU"), "notify", "acme travels"),
        (KeyContext("k3", "other"), [NC, SPIKE], "203.0.113.9", GeoInfo("RU"), "revoke", None),
        (LIVE, [ASN, SPIKE], "203.0.113.9", GeoInfo("RU", asn=64501), "revoke", None),
        (KeyContext("k9", "x"), [ASN, SPIKE], "203.0.113.9", GeoInfo("US", asn=64501), "log",
         "VPN"),
    ],
)  # fmt: skip
def test_allowlists(
    key: KeyContext, signals: list[Signal], ip: str, geo: GeoInfo, action: str, why: str | None
) -> None:
    p = parse_policy(tomllib.loads(ALLOW), "t")
    d = p.decide(key, signals, AccessEvent(ts=0, key_id=key.key_id, ip=ip), geo)
    assert d.action == action
    if why:
        assert any(why in r for r in d.reasons)


def test_allowlist_uses_signal_evidence_before_event() -> None:
    p = parse_policy(tomllib.loads(ALLOW), "t")
    spike_from_office = Signal("usage.spike", "medium", {"ip": "198.51.100.3"})
    d = p.decide(LIVE, [spike_from_office], AccessEvent(ts=0, key_id="k1", ip="203.0.113.1"))
    assert d.action == "log"


def test_dry_run_from_file_and_from_env() -> None:
    p = parse_policy(tomllib.loads("dry_run = true"), "t")
    d = p.decide(LIVE, [NC, SPIKE])
    assert (d.severity, d.action) == ("critical", "notify")
    assert "dry-run: would revoke" in d.reasons
    d2 = DefaultPolicy(dry_run=True).decide(LIVE, [IT])
    assert d2.action == "notify" and any(r.startswith("dry-run") for r in d2.reasons)
    assert DefaultPolicy(dry_run=True).decide(LIVE, [OFF]).action == "log"


def test_loaded_from_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'throttle_ttl_s = 60\n[actions]\nhigh = "notify"\n[routing]\nslack = "high"\n'
        "[delivery]\nmax_attempts = 2\nbase_delay_s = 0.01\n"
    )
    p = load_policy(path, dry_run=False)
    assert p.throttle_ttl_s == 60.0
    assert p.decide(LIVE, [IT]).action == "notify"
    assert p.routing == {"slack": "high", "webhook": "low", "pagerduty": "high"}
    assert (p.delivery.attempts, p.delivery.base_delay_s) == (2, 0.01)
    assert p.source == str(path)


def test_built_in_defaults() -> None:
    p = load_policy()
    assert p.throttle_ttl_s == 3600.0 and not p.dry_run
    assert p.routing == {"slack": "medium", "webhook": "low", "pagerduty": "high"}


KNOWN = ", ".join(sorted(signal_types()))  # every registered signal, named in the error
ACTIONS = "expected one of log, notify, throttle, revoke"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[signals."geo.new_contry"]\nmode = "log"',
         f'signals."geo.new_contry": unknown signal type "geo.new_contry" (known: {KNOWN})'),
        ('[signals."usage.spike"]\nmode = "silent"',
         'signals."usage.spike".mode: expected one of enforce, log, got "silent"'),
        ('[signals."geo.new_country"]\nseverity = "huge"',
         'signals."geo.new_country".severity: unknown setting (known: mode, group)'),
        ('[signals."usage.spike"]\ngroup = 3',
         'signals."usage.spike".group: expected a string, got 3'),
        ('[signals]\n"usage.spike" = 3', 'signals."usage.spike": expected a table, got 3'),
        ("signals = 3", "signals: expected a table, got 3"),
        ('[actions]\nhigh = "ban"', f'actions.high: {ACTIONS}, got "ban"'),
        ('[critical]\nanchor_severity = "high"',
         "critical.anchor_severity: replaced by pairs, high_pairs, medium_pairs"
         " (see the built-in policy)"),
        ('[critical]\npairs = [["location"]]',
         'critical.pairs[0]: expected a list of length >= 2, got ["location"]'),
        ('[critical]\npairs = [["a", ""]]',
         'critical.pairs[0][1]: expected a string of length >= 1, got ""'),
        ('[critical]\nhigh_pairs = "volume"', 'critical.high_pairs: expected a list, got "volume"'),
        ('[critical]\nalways = ["leak.x"]',
         f'critical.always[0]: unknown signal type "leak.x" (known: {KNOWN})'),
        ('[[allow]]\ncidrs = ["10.0.0.300/8"]',
         'allow[0].cidrs[0]: bad CIDR "10.0.0.300/8": \'10.0.0.300/8\' does not appear to be an'
         " IPv4 or IPv6 network"),
        ('[[allow]]\ncountries = ["Germany"]',
         'allow[0].countries[0]: expected an ISO 3166-1 alpha-2 code such as "DE", got "Germany"'),
        ('[[allow]]\nasns = ["AS64500"]', 'allow[0].asns[0]: expected an integer, got "AS64500"'),
        ("[[allow]]\nasns = [4294967296]",
         "allow[0].asns[0]: expected an integer <= 4294967295, got 4294967296"),
        ("[[allow]]\nnote = 'nothing'", "allow[0]: needs at least one of cidrs, asns, countries"),
        ('[[allow]]\ncidrs = ["10.0.0.0/8"]\n[[allow]]\ncidrs = "x"',
         'allow[1].cidrs: expected a list, got "x"'),
        ('[[allow]]\ncidrs = ["10.0.0.0/8"]\nsignals = ["geo.x"]',
         f'allow[0].signals[0]: unknown signal type "geo.x" (known: {KNOWN})'),
        ("allow = {a = 1}", 'allow: expected a list, got {"a": 1}'),
        ("throttle_ttl_s = -5", "throttle_ttl_s: expected a number > 0.0, got -5"),
        ("window_s = true", "window_s: expected a number, got true"),
        ("throttle_ttl = 5",
         "throttle_ttl: unknown setting (known: version, dry_run, window_s, throttle_ttl_s,"
         " actions, critical, test_keys, signals, allow, routing, delivery)"),
        ('[routing]\nteams = "low"',
         "routing.teams: unknown setting (known: slack, webhook, pagerduty)"),
        ('[routing]\nslack = "loud"',
         'routing.slack: expected one of low, medium, high, critical, got "loud"'),
        ("[delivery]\nmax_attempts = 0", "delivery.max_attempts: expected an integer >= 1, got 0"),
        ("[delivery]\nmax_total_s = 0", "delivery.max_total_s: expected a number > 0.0, got 0"),
        ("[delivery]\nattempts = 3",
         "delivery.attempts: unknown setting (known: max_attempts, base_delay_s, max_delay_s,"
         " max_total_s, slack_min_interval_s)"),
        ('dry_run = "yes"', 'dry_run: expected true or false, got "yes"'),
        ("version = 2", "version: expected one of 1, got 2"),
        ('[test_keys]\nmax_action = "ban"', f'test_keys.max_action: {ACTIONS}, got "ban"'),
    ],
)  # fmt: skip
def test_validation_errors(text: str, message: str) -> None:
    """Every mistake is one line naming the file and the failing path."""
    with pytest.raises(ConfigError) as info:
        parse_policy(tomllib.loads(text), "bad.toml")
    assert str(info.value) == f"bad.toml: {message}"


def test_errors_name_the_file_on_load(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[routing]\nslack = "huge"\n')
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert str(info.value) == (
        f'{path}: routing.slack: expected one of low, medium, high, critical, got "huge"'
    )


def test_every_setting_of_the_built_in_file_is_accepted_in_a_file(tmp_path: Path) -> None:
    """The built-in file, given as a user's file, loads to the same policy."""
    from detectors.policy_file import DEFAULT_POLICY_FILE

    path = tmp_path / "copy.toml"
    path.write_text((Path(__file__).parents[3] / "detectors" / DEFAULT_POLICY_FILE).read_text())
    copy, built_in = load_policy(path), load_policy()
    assert (copy.actions, copy.critical, copy.signals, copy.routing, copy.delivery) == (
        built_in.actions,
        built_in.critical,
        built_in.signals,
        built_in.routing,
        built_in.delivery,
    )


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[actions\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")


def test_window_s_stops_old_evidence_from_combining() -> None:
    """A new country 5 hours before a volume signal does not make a revoke (window_s = 1 h)."""
    old = Signal("geo.new_country", "medium", {"open_since": 0, "last_seen": 0, "count": 1})
    now = AccessEvent(ts=5 * 3600.0, key_id="k1", ip="203.0.113.1")
    d = DefaultPolicy().decide(LIVE, [old, SPIKE], now)
    assert (d.severity, d.action) == ("low", "log")
    assert any("window_s" in r for r in d.reasons)
    recent = Signal("geo.new_country", "medium", {"open_since": 0, "last_seen": 4.5 * 3600})
    assert DefaultPolicy().decide(LIVE, [recent, SPIKE], now).action == "revoke"


def test_signal_types_come_from_the_registry() -> None:
    from detectors.policy import KNOWN_SIGNAL_TYPES
    from detectors.registry import detector_types

    assert set(detector_types()) | {"leak.public_code"} == KNOWN_SIGNAL_TYPES
    assert set(DefaultPolicy().rules.signals) == KNOWN_SIGNAL_TYPES  # every type has a rule

"""The escalation policy as data: combinations, allowlists, log-only, test keys, dry-run, errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from detectors.model import AccessEvent, GeoInfo, KeyContext, Signal
from detectors.policy import DefaultPolicy, combined_severity, load_policy, parse_policy
from worker.errors import ConfigError

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
    assert (p.delivery.max_attempts, p.delivery.base_delay_s) == (2, 0.01)
    assert p.source == str(path)


def test_built_in_defaults() -> None:
    p = load_policy()
    assert p.throttle_ttl_s == 3600.0 and not p.dry_run
    assert p.routing == {"slack": "medium", "webhook": "low", "pagerduty": "high"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[signals."geo.new_contry"]\nmode = "log"', "unknown signal type 'geo.new_contry'"),
        ('[signals."usage.spike"]\nmode = "silent"', "signals.usage.spike.mode: must be one of"),
        ('[actions]\nhigh = "ban"', "actions.high: must be one of log, notify, throttle, revoke"),
        ('[critical]\nanchor_severity = "high"', "critical.anchor_severity: replaced by pairs"),
        ('[critical]\npairs = [["location"]]', "critical.pairs: must be a list of group pairs"),
        ('[critical]\nhigh_pairs = "volume"', "critical.high_pairs"),
        ('[[allow]]\ncidrs = ["10.0.0.300/8"]', "allow[0].cidrs: bad CIDR '10.0.0.300/8'"),
        ('[[allow]]\ncountries = ["Germany"]', "allow[0].countries"),
        ('[[allow]]\nasns = ["AS64500"]', "allow[0].asns"),
        ("[[allow]]\nnote = 'nothing'", "needs at least one of"),
        ('[[allow]]\ncidrs = ["10.0.0.0/8"]\nsignals = ["geo.x"]', "unknown signal type"),
        ("throttle_ttl_s = -5", "throttle_ttl_s: must be > 0"),
        ("throttle_ttl = 5", "throttle_ttl: unknown setting"),
        ('[routing]\nteams = "low"', "routing.teams: unknown setting"),
        ('[routing]\nslack = "loud"', "routing.slack"),
        ("[delivery]\nmax_attempts = 0", "delivery.max_attempts: must be >= 1"),
        ('dry_run = "yes"', "dry_run: must be bool"),
        ("version = 2", "only version 1"),
        ('[test_keys]\nmax_action = "ban"', "test_keys.max_action"),
    ],
)
def test_validation_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_policy(tomllib.loads(text), "bad.toml")
    assert message in str(info.value)
    assert "policy bad.toml" in str(info.value)


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

"""Every rule's samples, and validation of bad rule files."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.keyformat import KNOWN_PREFIXES, PREFIXES, generate_key
from scanners.engine import Engine
from scanners.rules import DEFAULT_RULES_PATH, load_rules, parse_rules

RULES = load_rules().rules
SAMPLES = [(r.id, s, True) for r in RULES for s in r.samples_match] + [
    (r.id, s, False) for r in RULES for s in r.samples_nomatch
]


@pytest.mark.parametrize(("rule_id", "sample", "must_match"), SAMPLES)
def test_rule_samples(engine: Engine, rule_id: str, sample: str, must_match: bool) -> None:
    found = {c.rule_id for c in engine.scan_text(sample)}
    assert (rule_id in found) is must_match


def test_every_rule_has_samples_both_ways() -> None:
    for rule in RULES:
        assert rule.samples_match and rule.samples_nomatch, rule.id


def test_platform_prefixes_are_configurable() -> None:
    data = tomllib.loads(DEFAULT_RULES_PATH.read_text())
    data["platform"] = {"prefixes": ["sk_live_"]}
    platform = dict(data["rules"][0])
    platform["samples_match"] = [s for s in platform["samples_match"] if "sk_live_" in s]
    data["rules"] = [platform]
    ruleset = parse_rules(data)
    assert ruleset.platform_prefixes == ("sk_live_",)
    assert ruleset.rules[0].keywords == ("sk_live_",)
    engine = Engine(ruleset)
    sample = "k=pk_live_S5asLKQ8iTcasNjosNQw1PDRhA8HQ6Ine7OBzVwIDst0WaHU8"
    assert engine.scan_text(sample) == []


def _one_rule(**overrides: object) -> dict[str, object]:
    rule: dict[str, object] = {
        "id": "t",
        "description": "test rule",
        "kind": "third_party",
        "keywords": ["tok_"],
        "regex": r"tok_[A-Za-z0-9]{20}",
        "samples_match": ["x tok_Q7hZ2mKpL9vX4cR8tYw3 y"],
        "samples_nomatch": ["tok_short"],
    }
    rule.update(overrides)
    return {"rules": [rule]}


def test_valid_minimal_rule_loads() -> None:
    (rule,) = parse_rules(_one_rule()).rules
    assert rule.checksum is None and rule.entropy_min is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"regex": "tok_[A-Z"},
            "rules[0].regex: bad regex: unterminated character set at position 4",
        ),
        ({"description": None}, "rules[0].description: expected a string, got null"),
        ({"description": 3}, "rules[0].description: expected a string, got 3"),
        ({"kind": "other"}, 'rules[0].kind: expected one of platform, third_party, got "other"'),
        ({"checksum": "md5"}, 'rules[0].checksum: expected one of keywatch-crc32, none, got "md5"'),
        ({"keywords": []}, "rules[0].keywords: expected a list of length >= 1, got []"),
        ({"keywords": "tok_"}, 'rules[0].keywords: expected a list, got "tok_"'),
        (
            {"keywords": ["tok_", ""]},
            'rules[0].keywords[1]: expected a string of length >= 1, got ""',
        ),
        ({"keywords": None}, 'rules[0].keywords: missing (required unless kind = "platform")'),
        (
            {"samples_match": ["tok_short"]},
            "rules[0].samples_match[0]: sample that must match does not: 'tok_short'",
        ),
        (
            {"samples_nomatch": ["tok_Q7hZ2mKpL9vX4cR8tYw3"]},
            "rules[0].samples_nomatch[0]: sample that must not match does:"
            " 'tok_Q7hZ2mKpL9vX4cR8tYw3'",
        ),
        (
            {"samples_match": ["tok_Q7hZ2mKpL9vX4cR8tYw3"], "keywords": ["zz"]},
            "rules[0].samples_match[0]: sample contains none of the keywords:"
            " 'tok_Q7hZ2mKpL9vX4cR8tYw3'",
        ),
        ({"entropy_min": "high"}, 'rules[0].entropy_min: expected a number, got "high"'),
        ({"keyword_at_start": 1}, "rules[0].keyword_at_start: expected true or false, got 1"),
        (
            {"severity": "high"},
            "rules[0].severity: unknown setting (known: id, description, kind, regex, keywords,"
            " checksum, entropy_min, samples_match, samples_nomatch, keyword_at_start)",
        ),
    ],
)
def test_bad_rule_raises_config_error(overrides: dict[str, object], message: str) -> None:
    """One line naming the file and the failing path."""
    with pytest.raises(ConfigError) as info:
        parse_rules(_one_rule(**overrides), "rules.toml")
    assert str(info.value) == f"rules.toml: {message}"


def test_prefix_placeholder_without_prefixes_raises() -> None:
    data = {**_one_rule(regex="<PREFIX>x{20}"), "platform": {"prefixes": []}}
    with pytest.raises(ConfigError, match=r"rules\[0\]\.regex: uses <PREFIX> but platform\.pre"):
        parse_rules(data)
    with pytest.raises(ConfigError, match=r"^<rules>: platform\.prefixes: expected a list"):
        parse_rules({**_one_rule(), "platform": {"prefixes": "sk_"}})
    with pytest.raises(ConfigError, match=r"^<rules>: platform\.prefix: unknown setting"):
        parse_rules({**_one_rule(), "platform": {"prefix": ["sk_"]}})


def test_platform_prefixes_are_the_key_formats() -> None:
    """One source for the prefixes: the default rules take them from the key format, and the
    platform rule's own regex finds a generated key of every kind and environment."""
    ruleset = load_rules()
    assert ruleset.platform_prefixes == KNOWN_PREFIXES
    (platform,) = [r for r in ruleset.rules if r.kind == "platform"]
    assert set(platform.keywords) == set(PREFIXES.values())
    for kind, env in PREFIXES:
        key = generate_key(env, kind).secret
        assert platform.find(f"token = {key}\n") == [key], (kind, env)


def test_missing_id_and_duplicates_raise() -> None:
    with pytest.raises(ConfigError, match=r"rules\[0\]\.id: expected a string of length >= 1"):
        parse_rules(_one_rule(id=""))
    data = _one_rule()
    data["rules"] = [data["rules"][0], data["rules"][0]]  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"rules\[1\]\.id: duplicate rule id 't'"):
        parse_rules(data)
    with pytest.raises(ConfigError, match=r"rules: expected a list of length >= 1, got \[\]"):
        parse_rules({"rules": []})
    with pytest.raises(ConfigError, match=r"rules: missing \(required\)"):
        parse_rules({})


def test_bad_file_raises_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text("[[rules]\nid = ")
    with pytest.raises(ConfigError, match=r"rules\.toml"):
        Engine.from_file(bad)
    with pytest.raises(ConfigError):
        load_rules(tmp_path / "missing.toml")


def test_config_error_message_never_holds_a_full_sample() -> None:
    sample = "k=sk_live_aWFeOgd23eOp1ARVjVEeNJPXGyijpXUwIL8tuPmXyNc3tzkFN"
    data = _one_rule(samples_match=[sample], keywords=["sk_live_"])
    with pytest.raises(ConfigError) as info:
        parse_rules(data)
    assert sample[2:] not in str(info.value)

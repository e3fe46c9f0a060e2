"""Settings: defaults, parsing, and one clear line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from worker.settings import Settings


def test_defaults_follow_the_contract() -> None:
    s = Settings.from_env({})
    assert s.broker == "kafka://localhost:9092"
    assert s.database_url == "sqlite:///keywatch.db"
    assert s.redis_url is None and s.geoip_city_db is None and s.geoip_asn_db is None
    assert (s.web_port, s.scanner_web_port) == (6066, 6067)
    assert s.github_api_url == "https://api.github.com"
    assert s.gitlab_url == "https://gitlab.com"
    assert s.topics.access == "gateway.access"
    assert s.topics.key_actions == "keywatch.key-actions"
    assert s.broker_urls == ["localhost:9092"]


def test_values_are_parsed(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    s = Settings.from_env({
        "KEYWATCH_BROKER": "kafka://a:1;kafka://b:2", "KEYWATCH_WEB_PORT": "7000",
        "KEYWATCH_POLICY": str(policy), "KEYWATCH_DRY_RUN": "yes",
        "KEYWATCH_TOPIC_ALERTS": "custom.alerts",
    })  # fmt: skip
    assert s.broker_urls == ["a:1", "b:2"]
    assert s.web_port == 7000 and s.policy_file == policy and s.dry_run
    assert s.topics.alerts == "custom.alerts" and s.topics.access == "gateway.access"


def test_every_bad_value_is_reported_once_without_secrets() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({
            "KEYWATCH_WEB_PORT": "70000", "KEYWATCH_BROKER": "http://x:1",
            "KEYWATCH_GEOIP_CITY_DB": "/nonexistent.mmdb",
            "KEYWATCH_WEBHOOK_URL": "https://hooks.example/x",
            "KEYWATCH_WEBHOOK_SECRET": "not-a-whsec-super-secret",
            "KEYWATCH_SLACK_WEBHOOK_URL": "ftp://nope",
        })  # fmt: skip
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 5
    joined = "\n".join(lines)
    for var in ("KEYWATCH_WEB_PORT", "KEYWATCH_BROKER", "KEYWATCH_GEOIP_CITY_DB",
                "KEYWATCH_WEBHOOK_SECRET", "KEYWATCH_SLACK_WEBHOOK_URL"):  # fmt: skip
        assert var in joined
    assert "super-secret" not in joined


@pytest.mark.parametrize("raw, mode", [("auto", "auto"), ("ON", "on"), (" off ", "off")])
def test_changelog_seal_modes(raw: str, mode: str) -> None:
    assert Settings.from_env({}).changelog_seal == "auto"
    assert Settings.from_env({"KEYWATCH_CHANGELOG_SEAL": raw}).changelog_seal == mode


def test_an_unknown_changelog_seal_mode_is_one_line() -> None:
    with pytest.raises(ConfigError, match="KEYWATCH_CHANGELOG_SEAL='sometimes': must be auto"):
        Settings.from_env({"KEYWATCH_CHANGELOG_SEAL": "sometimes"})

"""The JSON topics' typed records: today's messages (fixtures) decode, unknown fields are ignored,
and a key action or feedback message re-encodes to exactly the JSON it came as."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from core.errors import InputError
from worker.keystore.service import announcement
from worker.messages import (
    alert_from_dict,
    feedback_from_dict,
    is_alert,
    key_action_from_dict,
    to_dict,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "messages_v1"


def fixture(name: str) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return obj


def names(prefix: str) -> list[str]:
    found = sorted(p.name for p in FIXTURES.glob(f"{prefix}*.json"))
    assert found, prefix
    return found


@pytest.mark.parametrize("name", names("alert_"))
def test_alert_fixtures_decode_to_the_typed_alert_and_back(name: str) -> None:
    message = fixture(name)
    alert = alert_from_dict(message)
    assert alert.id == message["id"] and alert.action == message["action"]
    assert [s.type for s in alert.signals] == [s["type"] for s in message["signals"]]
    assert alert.to_dict() == message  # nothing lost: extra fields ride in ``extra``


def test_leak_fields_are_kept_as_extra() -> None:
    alert = alert_from_dict(fixture("alert_leak.json"))
    assert alert.kind == "leak" and alert.extra["rule_id"] == "keywatch-live"
    assert alert.extra["line"] == 12


@pytest.mark.parametrize("name", names("key_action_"))
def test_key_action_fixtures_decode_and_reencode_exactly(name: str) -> None:
    message = fixture(name)
    action = key_action_from_dict(message)
    assert action.key_id == "9f2a1c3e" and action.action == message["action"]
    assert to_dict(action) == message


@pytest.mark.parametrize("name", names("feedback_"))
def test_feedback_fixtures_decode_and_reencode_exactly(name: str) -> None:
    message = fixture(name)
    feedback = feedback_from_dict(message)
    assert feedback.verdict == message["verdict"] and feedback.actor == message["actor"]
    assert to_dict(feedback) == message


def test_a_newer_writers_extra_fields_are_ignored() -> None:
    newer = {**fixture("key_action_throttle.json"), "region": "eu-1"}
    assert to_dict(key_action_from_dict(newer)) == fixture("key_action_throttle.json")
    assert feedback_from_dict({**fixture("feedback_cli.json"), "weight": 2}).verdict == "benign"
    assert is_alert({**fixture("alert_anomaly.json"), "confidence": 0.9})


@pytest.mark.parametrize(
    "change, path",
    [({"action": "explode"}, "$.action"), ({"key_id": 7}, "$.key_id"),
     ({"ts": "yesterday"}, "$.ts"), ({"signals": [{"type": "x"}]}, "$.signals[0]")],
)  # fmt: skip
def test_a_bad_alert_is_an_input_error_naming_the_field(change: dict[str, Any], path: str) -> None:
    with pytest.raises(InputError) as err:
        alert_from_dict({**fixture("alert_anomaly.json"), **change})
    assert err.value.reason == "bad_alert" and path in str(err.value)


def test_bad_feedback_and_key_actions_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"\$\.verdict") as err:
        feedback_from_dict({**fixture("feedback_cli.json"), "verdict": "maybe"})
    assert err.value.reason == "bad_feedback"
    with pytest.raises(InputError, match="key_id"):
        key_action_from_dict({"action": "revoke", "reason": "r", "ts": "t"})
    assert not is_alert([1, 2])


def test_the_announcement_leaves_the_redis_view_out() -> None:
    payload = {**fixture("key_action_throttle.json"), "view": {"status": "active"}}
    assert announcement(payload) == fixture("key_action_throttle.json")

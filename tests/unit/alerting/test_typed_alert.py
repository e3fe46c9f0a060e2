"""The response path decodes the alert contract once into the typed ``Alert``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from worker.agents.respond import _alert
from worker.commands.alerts import describe

ALERT: dict[str, Any] = {
    "id": "01JDALERT000000000000000001", "kind": "anomaly", "key_id": "9f2a1c3e",
    "account_id": "acme", "ts": "2026-11-22T03:04:05.123Z",
    "detected_at": "2026-11-22T03:04:05.412Z", "severity": "high", "action": "throttle",
    "signals": [{"type": "usage.spike", "severity": "high", "evidence": {"ratio": 40.0}}],
    "summary": "Key 9f2a1c3e at 40x its usual rate",
}  # fmt: skip


def test_delivery_decodes_an_alert_message_once() -> None:
    alert = _alert(b'{"id": "x"}')
    assert alert is None  # not an alert: the actions agent dead-letters it
    assert _alert(b"not json") is None
    typed = _alert(orjson.dumps(ALERT))
    assert typed is not None and (typed.key_id, typed.severity) == ("9f2a1c3e", "high")
    assert typed.to_dict() == ALERT  # the wire form is unchanged


@pytest.mark.parametrize(
    ("message", "lines"),
    [
        (ALERT, ["2026-11-22T03:04:05.123Z  HIGH anomaly on key 9f2a1c3e: throttle",
                 "  Key 9f2a1c3e at 40x its usual rate", "  • `usage.spike` (high): ratio=40.0",
                 "  alert 01JDALERT000000000000000001"]),
        ({**ALERT, "severity": "huge"},
         ["(not an alert: AlertMessage: Invalid enum value 'huge' - at `$.severity`)"]),
    ],
)  # fmt: skip
def test_tail_describes_typed_alerts_and_names_the_rest(
    message: dict[str, Any], lines: list[str]
) -> None:
    assert describe(message).splitlines() == lines

"""Slack buttons: Block Kit actions on alerts, signature verification, payload parsing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest

from core.errors import InputError
from detectors.model import Alert
from tests.support.receiver import Receiver, serving
from tests.support.slack import SECRET, block_actions, signed
from worker.alerting.http import client
from worker.alerting.interactions import (
    SignatureError,
    parse,
    resolved_message,
    sign,
    verify,
)
from worker.alerting.pagerduty import PagerDutySink
from worker.alerting.render import slack_message
from worker.keystore.alerts import AlertStore
from worker.keystore.store import KeyStore
from worker.messages import alert_from_dict


def form(payload: dict[str, Any]) -> bytes:
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


ALERT = {"id": "01JDALERT000000000000000001", "kind": "anomaly", "key_id": "9f2a1c3e",
         "account_id": "acme", "ts": "2026-11-22T03:04:05.123Z",
         "detected_at": "2026-11-22T03:04:05.412Z", "severity": "high", "action": "throttle",
         "signals": [], "summary": "Key 9f2a1c3e used from RU (new)"}  # fmt: skip


def typed(message: dict[str, Any]) -> Alert:
    """An alert message as the sinks get it (decoded once)."""
    return alert_from_dict(message)


def test_alert_messages_carry_benign_and_compromised_buttons() -> None:
    actions = slack_message(typed(ALERT))["blocks"][-1]
    assert actions["type"] == "actions"
    buttons = {b["action_id"]: b for b in actions["elements"]}
    assert set(buttons) == {"keywatch_benign", "keywatch_compromised"}
    assert {b["value"] for b in buttons.values()} == {"01JDALERT000000000000000001|9f2a1c3e"}
    assert buttons["keywatch_compromised"]["style"] == "danger"
    assert "confirm" in buttons["keywatch_compromised"]
    no_key = slack_message(typed({**ALERT, "key_id": None}))
    assert all(b["type"] != "actions" for b in no_key["blocks"])


def test_slacks_documented_signature_example() -> None:
    # ref: api.slack.com/authentication/verifying-requests-from-slack (worked example)
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
            b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
            b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
            b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")  # fmt: skip
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(SECRET, "1531420618", body) == expected
    verify(SECRET, {"X-Slack-Request-Timestamp": "1531420618", "X-Slack-Signature": expected},
           body, now=1531420618 + 10)  # fmt: skip


def test_forged_stale_and_tampered_requests_are_refused() -> None:
    body = form(block_actions("keywatch_benign", "A1|k1", slack_message(typed(ALERT))))
    verify(SECRET, signed(body), body)
    with pytest.raises(SignatureError, match="bad Slack signature"):
        verify(SECRET, signed(body, secret="not-the-secret"), body)
    with pytest.raises(SignatureError, match="stale"):
        verify(SECRET, signed(body, at=time.time() - 301), body)
    with pytest.raises(SignatureError, match="bad Slack signature"):
        verify(SECRET, signed(body), body + b"x")
    with pytest.raises(SignatureError, match="missing"):
        verify(SECRET, {}, body)
    with pytest.raises(SignatureError, match="timestamp"):
        verify(SECRET, {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}, body)


def test_a_button_press_becomes_a_verdict() -> None:
    message = slack_message(typed(ALERT))
    v = parse(form(block_actions("keywatch_compromised", "A1|k1", message)))
    assert (v.alert_id, v.key_id, v.verdict, v.actor) == ("A1", "k1", "compromised", "slack:alice")
    assert v.response_url and v.response_url.startswith("https://hooks.slack.com/actions/")
    updated = resolved_message(v.message, v.verdict, v.actor)
    assert updated["replace_original"] is True
    assert all(b["type"] != "actions" for b in updated["blocks"])  # no second answer
    assert "Resolved as *compromised* by alice" in updated["blocks"][-1]["text"]["text"]


@pytest.mark.parametrize(
    "body",
    [b"", b"payload=not-json", form({"type": "view_submission"}),
     form(block_actions("someone_elses_button", "A1|k1", slack_message(typed(ALERT)))),
     form(block_actions("keywatch_benign", "no-key-part", slack_message(typed(ALERT))))],
)  # fmt: skip
def test_other_payloads_are_input_errors(body: bytes) -> None:
    with pytest.raises(InputError):
        parse(body)


async def test_pagerduty_incidents_survive_a_restart(tmp_path: Path) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'kw.db'}")
    with serving(Receiver()) as rx:
        async with client(timeout_s=5) as http:
            first = PagerDutySink(http, rx.url, "R0UTINGKEY", AlertStore(store))
            await first.send(typed({**ALERT, "id": "A1"}))
            restarted = PagerDutySink(http, rx.url, "R0UTINGKEY", AlertStore(store))
            await restarted.load()
            assert restarted.resolving("9f2a1c3e") == "keywatch/9f2a1c3e/A1"
            await restarted.send(typed({**ALERT, "id": "A2"}))  # joins the open incident
            await restarted.resolve("9f2a1c3e")
        events = [orjson.loads(r.body) for r in rx.received]
    assert [(e["event_action"], e["dedup_key"]) for e in events] == [
        ("trigger", "keywatch/9f2a1c3e/A1"), ("trigger", "keywatch/9f2a1c3e/A1"),
        ("resolve", "keywatch/9f2a1c3e/A1"),
    ]  # fmt: skip
    assert AlertStore(store).pagerduty_open() == {}
    store.close()


async def test_pagerduty_keeps_working_while_the_database_is_down(tmp_path: Path) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'missing-dir' / 'kw.db'}", create=False)
    transport = httpx.MockTransport(lambda request: httpx.Response(202))
    async with client(timeout_s=5, transport=transport) as http:
        sink = PagerDutySink(http, "https://events.example/v2/enqueue", "R", AlertStore(store))
        await sink.send(typed({**ALERT, "id": "A1"}))
        assert sink.resolving("9f2a1c3e") == "keywatch/9f2a1c3e/A1"
        await sink.resolve("9f2a1c3e")
    assert sink.resolving("9f2a1c3e") is None


async def _send_to_a_dead_broker(message: Any) -> None:
    """What ``keywatch.feedback`` sends meet while the broker is down (a real producer)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", request_timeout_ms=1000)
    try:
        await producer.start()  # nothing listens on the discard port
        await producer.send_and_wait("keywatch.feedback", orjson.dumps(message))
    finally:
        await producer.stop()


async def test_a_press_is_queued_in_sql_before_the_200_and_survives_a_dead_broker(
    tmp_path: Path,
) -> None:
    """Slack never retries an interaction: the 200 must mean the verdict is kept, whatever the
    broker does. It waits in the feedback outbox until the broker takes it."""
    from worker.agents.feedback import accept_slack, publish_pending

    store = KeyStore(f"sqlite:///{tmp_path / 'kw.db'}")
    alerts = AlertStore(store)
    body = form(block_actions("keywatch_compromised", f"{ALERT['id']}|9f2a1c3e",
                              slack_message(typed(ALERT))))  # fmt: skip
    forged = await accept_slack(SECRET, signed(body, secret="guessed"), body, alerts)
    assert forged[0] == 401 and alerts.pending_feedback() == []
    assert await accept_slack(SECRET, signed(body), body, alerts) == (200, None, "accepted")
    [queued] = alerts.pending_feedback()
    assert (queued.key_id, queued.payload["alert_id"]) == ("9f2a1c3e", ALERT["id"])
    assert (queued.payload["verdict"], queued.payload["actor"]) == ("compromised", "slack:alice")
    assert queued.payload["response_url"].startswith("https://hooks.slack.com/actions/")

    for _ in range(2):  # the broker is down: nothing is lost, tick after tick
        assert await publish_pending(alerts, _send_to_a_dead_broker) == 0
        assert [e.id for e in alerts.pending_feedback()] == [queued.id]

    sent: list[Any] = []

    async def broker_back(message: Any) -> None:
        sent.append(message)

    assert await publish_pending(alerts, broker_back) == 1
    assert [m["verdict"] for m in sent] == ["compromised"] and alerts.pending_feedback() == []
    store.close()


async def test_a_press_while_the_database_is_down_is_refused_not_acknowledged(
    tmp_path: Path,
) -> None:
    from worker.agents.feedback import accept_slack

    store = KeyStore(f"sqlite:///{tmp_path / 'missing-dir' / 'kw.db'}", create=False)
    body = form(
        block_actions("keywatch_benign", f"{ALERT['id']}|9f2a1c3e", slack_message(typed(ALERT)))
    )
    status, answer, outcome = await accept_slack(SECRET, signed(body), body, AlertStore(store))
    assert (status, outcome) == (503, "unavailable") and answer and "try again" in answer["error"]
    store.close()

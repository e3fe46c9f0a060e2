"""Delivery to local Slack, webhook and PagerDuty servers: shapes, signatures, retries, routing."""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.errors import DeliveryError, DeliveryGaveUp
from core.httpdate import retry_after
from core.keyformat import generate_key
from core.redaction import redact_obj
from core.retry import RetryPolicy
from detectors.model import Alert
from detectors.policy_file import load_policy
from detectors.routing import Delivery
from tests.support.receiver import Receiver, serving
from worker.alerting.http import client
from worker.alerting.pagerduty import PagerDutySink
from worker.alerting.render import slack_message
from worker.alerting.retry import with_retries
from worker.alerting.router import Router, build_router
from worker.alerting.slack import SlackSink
from worker.alerting.webhook import WebhookSink
from worker.messages import alert_from_dict
from worker.metrics import Metrics
from worker.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
FAST = RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.02, timeout_s=10.0)
KEY = generate_key("live").secret  # planted in the alert: no body may contain it


def make_alert(severity: str = "critical", action: str = "revoke", key_id: str = "9f2a1c3e",
               alert_id: str = "01JDALERT000000000000000001") -> Alert:  # fmt: skip
    """The alert as the router gets it: its JSON decoded once."""
    return alert_from_dict(alert_json(severity, action, key_id, alert_id))


def alert_json(severity: str = "critical", action: str = "revoke", key_id: str = "9f2a1c3e",
               alert_id: str = "01JDALERT000000000000000001") -> dict[str, Any]:  # fmt: skip
    """An alert as published on keywatch.alerts."""
    return {
        "id": alert_id, "kind": "anomaly", "key_id": key_id, "account_id": "acme",
        "ts": "2026-11-22T03:04:05.123Z", "detected_at": "2026-11-22T03:04:05.412Z",
        "severity": severity, "action": action,
        "signals": [
            {"type": "geo.new_country", "severity": "medium",
             "evidence": {"country": "RU", "known": ["DE", "US"]}},
            {"type": "usage.spike", "severity": "high",
             "evidence": {"observed_per_hour": 1210, "baseline_per_hour": 31.5, "sample": KEY}},
        ],
        "summary": f"Key 9f2a1c3e used from RU (new) at 38x its usual rate ({KEY})",
    }  # fmt: skip


@dataclass
class Dead:
    letters: list[tuple[str, str, Any, str]] = field(default_factory=list)

    async def __call__(self, reason: str, source: str, payload: Any, detail: str) -> None:
        self.letters.append((reason, source, payload, detail))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with client(timeout_s=5) as c:
        yield c


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with serving(Receiver()) as r:
        yield r


def test_block_kit_shape() -> None:
    msg = slack_message(make_alert(), contact="sec@acme.example")
    blocks = msg["blocks"]
    assert [b["type"] for b in blocks] == [
        "header", "section", "section", "section", "context", "actions",
    ]  # fmt: skip
    assert blocks[0]["text"]["type"] == "plain_text" and len(blocks[0]["text"]["text"]) <= 150
    assert "CRITICAL" in blocks[0]["text"]["text"]
    fields = [f["text"] for f in blocks[2]["fields"]]
    assert "*Key*\n9f2a1c3e" in fields and "*Account*\nacme" in fields
    assert "*Action taken*\nrevoke" in fields and "*Owner contact*\nsec@acme.example" in fields
    assert all(f["type"] == "mrkdwn" for f in blocks[2]["fields"])
    signals = blocks[3]["text"]["text"]
    assert "`geo.new_country` (medium): country=RU; known=DE, US" in signals
    assert "observed_per_hour=1210" in signals
    assert "2026-11-22T03:04:05.123Z" in blocks[4]["elements"][0]["text"]
    assert "38x" in msg["text"]
    assert KEY not in orjson.dumps(msg).decode()
    assert KEY[:12] in orjson.dumps(msg).decode()  # the redacted stub stays recognisable


async def test_slack_429_then_200_delivered_once_after_the_wait(http: httpx.AsyncClient) -> None:
    with serving(Receiver(script=[(429, {"Retry-After": "1"})])) as rx:
        dead = Dead()
        router = Router([SlackSink(http, rx.url, 0.0)], {"slack": "low"}, FAST, dead)
        assert await router.deliver(make_alert()) == {"slack": "delivered"}
    assert len(rx.received) == 2 and dead.letters == []
    assert rx.received[1].at - rx.received[0].at >= 0.95
    assert rx.received[0].body == rx.received[1].body
    assert KEY not in rx.received[1].body.decode()


async def test_500_forever_goes_to_dead_letter(http: httpx.AsyncClient) -> None:
    with serving(Receiver(default=(500, {}))) as rx:
        dead, metrics = Dead(), Metrics()
        router = Router([SlackSink(http, rx.url, 0.0)], {"slack": "low"}, FAST, dead,
                        metrics=metrics)  # fmt: skip
        assert await router.deliver(make_alert()) == {"slack": "failed"}
    assert len(rx.received) == FAST.attempts
    [(reason, source, payload, detail)] = dead.letters
    assert (reason, source) == ("delivery_failed:slack", "delivery")
    assert payload == alert_json() and "HTTP 500" in detail
    assert metrics.deliveries.labels(sink="slack", outcome="failed")._value.get() == 1


async def test_permanent_4xx_is_not_retried(http: httpx.AsyncClient) -> None:
    with serving(Receiver(default=(400, {}))) as rx:
        dead = Dead()
        router = Router([SlackSink(http, rx.url, 0.0)], {"slack": "low"}, FAST, dead)
        assert await router.deliver(make_alert()) == {"slack": "failed"}
    assert len(rx.received) == 1 and dead.letters[0][0] == "delivery_failed:slack"


async def test_redirects_are_not_followed(http: httpx.AsyncClient) -> None:
    with serving(Receiver()) as other:
        with serving(Receiver(default=(307, {"Location": other.url}))) as rx:
            dead = Dead()
            router = Router([SlackSink(http, rx.url, 0.0)], {"slack": "low"}, FAST, dead)
            assert await router.deliver(make_alert()) == {"slack": "failed"}
        assert other.received == [] and len(rx.received) == 1


async def test_slack_spacing_per_webhook(http: httpx.AsyncClient, rx: Receiver) -> None:
    router = Router([SlackSink(http, rx.url, 0.3)], {"slack": "low"}, FAST, Dead())
    for i in range(3):
        await router.deliver(make_alert(alert_id=f"a{i}"))
    gaps = [b.at - a.at for a, b in zip(rx.received, rx.received[1:], strict=False)]
    assert len(gaps) == 2 and all(g >= 0.28 for g in gaps)


async def test_webhook_signature_verifies(http: httpx.AsyncClient, rx: Receiver) -> None:
    router = Router([WebhookSink(http, rx.url, SECRET)], {"webhook": "low"}, FAST, Dead(),
                    contact=_contact)  # fmt: skip
    assert await router.deliver(make_alert()) == {"webhook": "delivered"}
    [req] = rx.received
    assert req.headers["webhook-id"] == make_alert().id
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 60
    payload = Webhook(SECRET).verify(req.body, req.headers)
    assert payload["type"] == "keywatch.anomaly"
    assert payload["timestamp"] == "2026-11-22T03:04:05.412Z"
    # the alert's JSON as published (redacted), plus the owner's contact: the wire is unchanged
    expected = redact_obj(alert_json()) | {"contact": "owner@acme.example"}
    assert payload["data"] == expected
    assert KEY not in req.body.decode()
    tampered = req.body.replace(b"acme", b"evil")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, req.headers)


async def _contact(key_id: str) -> str | None:
    return "owner@acme.example" if key_id == "9f2a1c3e" else None


async def test_pagerduty_trigger_then_resolve_same_dedup_key(
    http: httpx.AsyncClient, rx: Receiver
) -> None:
    pd = PagerDutySink(http, rx.url, "R0UTINGKEY")
    router = Router([pd], {"pagerduty": "high"}, FAST, Dead(), contact=_contact)
    assert await router.deliver(make_alert("high", "throttle", alert_id="A1")) == {
        "pagerduty": "delivered"
    }
    assert await router.deliver(make_alert("medium", "notify", alert_id="A2")) == {}
    await router.deliver(make_alert("critical", "revoke", alert_id="A3"))
    assert await router.resolve("9f2a1c3e") is True
    assert await router.resolve("9f2a1c3e") is False  # nothing open any more
    events = [orjson.loads(r.body) for r in rx.received]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert {e["dedup_key"] for e in events} == {"keywatch/9f2a1c3e/A1"}
    first = events[0]
    assert first["routing_key"] == "R0UTINGKEY"
    assert (
        first["payload"]["severity"] == "error" and events[1]["payload"]["severity"] == "critical"
    )
    assert first["payload"]["source"] == "keywatch" and first["payload"]["summary"]
    details = first["payload"]["custom_details"]
    assert details["key_id"] == "9f2a1c3e" and details["contact"] == "owner@acme.example"
    assert all(KEY not in r.body.decode() for r in rx.received)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [("low", {"webhook"}), ("medium", {"slack", "webhook"}),
     ("high", {"slack", "webhook", "pagerduty"}), ("critical", {"slack", "webhook", "pagerduty"})],
)  # fmt: skip
async def test_routing_by_severity(
    http: httpx.AsyncClient, rx: Receiver, severity: str, expected: set[str]
) -> None:
    settings = Settings(slack_webhook_url=rx.url, webhook_url=rx.url, webhook_secret=SECRET,
                        pagerduty_routing_key="R", pagerduty_url=rx.url)  # fmt: skip
    router, _ = build_router(settings, load_policy(), Dead(), http=http)
    assert {s.name for s in router.targets(make_alert(severity))} == expected
    router.retry = FAST
    assert set(await router.deliver(make_alert(severity))) == expected
    assert len(rx.received) == len(expected)


async def test_no_sinks_configured_delivers_nothing(http: httpx.AsyncClient) -> None:
    router, _ = build_router(Settings(), load_policy(), Dead(), http=http)
    assert router.sinks == [] and await router.deliver(make_alert()) == {}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("0.5", 0.5), (None, None), ("", None), ("soon", None), ("-4", 0.0),
     ("Thu, 01 Jan 1970 00:01:40 GMT", 40.0)],
)  # fmt: skip
def test_retry_after(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, now=60.0) == seconds


async def test_a_wait_past_the_deadline_gives_up_at_once() -> None:
    """A Retry-After that would end past ``max_total_s`` is not slept: the alert gives up."""
    calls: list[float] = []

    async def send() -> None:
        calls.append(time.monotonic())
        raise DeliveryError("busy", retry_after=0.2 if len(calls) == 1 else 3600.0)

    cfg = Delivery(attempts=10, base_delay_s=0.01, max_delay_s=0.01, timeout_s=12.0)
    with pytest.raises(DeliveryGaveUp, match="after 2 attempt"):
        await with_retries(send, cfg)
    assert 0.19 <= calls[1] - calls[0] < 2.0  # the first asked wait was honoured


async def test_backoff_grows_with_jitter() -> None:
    calls: list[float] = []

    async def send() -> None:
        calls.append(time.monotonic())
        raise DeliveryError("down")

    cfg = Delivery(attempts=4, base_delay_s=0.05, max_delay_s=0.2, timeout_s=100.0)
    with pytest.raises(DeliveryGaveUp, match="after 4 attempt"):
        await with_retries(send, cfg)
    waits = [b - a for a, b in itertools.pairwise(calls)]
    # min(max, base * 2^(n-1) + jitter in [0, base])
    bounds = [(0.05, 0.1), (0.1, 0.15), (0.2, 0.2)]
    assert all(lo - 0.01 <= w <= hi + 0.1 for w, (lo, hi) in zip(waits, bounds, strict=True))


async def test_a_permanent_error_is_not_retried() -> None:
    calls: list[int] = []

    async def send() -> None:
        calls.append(1)
        raise DeliveryGaveUp("HTTP 400")

    with pytest.raises(DeliveryGaveUp, match="HTTP 400"):
        await with_retries(send, FAST)
    assert calls == [1]

"""On the real broker: a revoked key still tried, as the gateway reports it, raises an alert."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import orjson
import pytest

from detectors.analyzer import Analyzer
from detectors.policy_file import load_policy
from geoip.resolver import GeoResolver
from tests.support.kafka import consume, publish
from tests.support.procs import Proc
from worker.devstack import EmbeddedBroker
from worker.replay import Replay

pytestmark = pytest.mark.services


def refused(ts: float, key_id: str, ip: str, auth: str) -> dict[str, Any]:
    """A keywatch gateway decision as published on gateway.access (native, no key in it)."""
    return {"ts": ts, "key_id": key_id, "ip": ip, "method": "GET", "path": "/v1/users",
            "status": 401, "user_agent": "curl/8.5", "request_id": f"r{ts}",
            "gateway": "gw-1", "auth": auth}  # fmt: skip


def test_a_revoked_key_still_tried_raises_an_alert(worker: Proc, broker: EmbeddedBroker) -> None:
    now = time.time()
    ips = ["203.0.113.7", "203.0.113.9", "198.51.100.4"]  # two networks
    tries = [refused(now - 30 + i, "k-dead", ips[i % 3], "revoked") for i in range(9)]
    asyncio.run(publish(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ACCESS"], [tries]))
    (alert,) = asyncio.run(consume(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ALERTS"], 1))
    worker.wait_metric("keywatch_events_analyzed_total", len(tries))
    assert alert["kind"] == "anomaly" and alert["key_id"] == "k-dead"
    assert [s["type"] for s in alert["signals"]] == ["auth.revoked_in_use"]
    assert (alert["severity"], alert["action"]) == ("medium", "notify")
    assert alert["signals"][0]["evidence"]["network"] == "203.0.113.0/24"


def test_a_network_trying_many_unknown_keys_raises_an_auth_abuse_alert(
    worker: Proc, broker: EmbeddedBroker
) -> None:
    """Key enumeration from one /24: every attempt dead-lettered (nothing lost) and one
    per-network alert, with hash prefixes only, that the response path does not act on."""
    now = time.time()
    hashes = [hashlib.sha256(f"sk_live_guess{i}".encode()).hexdigest() for i in range(12)]
    tries = [{**refused(now - 30 + i, "", f"198.51.100.{i}", "invalid"), "key_hash": h}
             for i, h in enumerate(hashes)]  # fmt: skip
    for t in tries:
        del t["key_id"]
    topic = worker.env["KEYWATCH_TOPIC_DEAD_LETTER"]
    asyncio.run(publish(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ACCESS"], [tries]))
    (alert,) = asyncio.run(consume(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ALERTS"], 1))
    letters = asyncio.run(consume(broker.bootstrap, topic, len(tries)))
    assert (alert["kind"], alert["key_id"]) == ("auth_abuse", "net:198.51.100.0/24")
    assert (alert["action"], alert["account_id"]) == ("notify", None)
    (signal,) = alert["signals"]
    assert signal["type"] == "auth.enumeration" and signal["evidence"]["distinct_keys"] == 10
    assert not any(h in orjson.dumps(alert).decode() for h in hashes)  # prefixes only
    assert {letter["reason"] for letter in letters} == {"unknown_key"}


def test_refusals_without_a_credential_raise_a_burst_alert_and_keep_their_dead_letters(
    worker: Proc, broker: EmbeddedBroker
) -> None:
    """A credential-stuffing tool from one /24, as keywatch gateway reports it: most requests
    without any credential (``missing``), every third with one of 8 unknown keys (below
    ``auth.enumeration``), on two endpoints. Every request is dead-lettered with its reason as
    before, the network gets one ``auth.burst`` alert, and replay raises the same id."""
    now = time.time()
    hashes = [hashlib.sha256(f"sk_live_guess{i}".encode()).hexdigest() for i in range(8)]
    tries = []
    for i in range(120):
        t = refused(now - 200 + i, "", f"198.51.100.{i % 5}", "missing")
        del t["key_id"]
        t["path"] = "/v1/login" if i % 2 else "/v1/token"
        if i % 3 == 0:
            t.update(auth="invalid", key_hash=hashes[i % 8])
        tries.append(t)
    messages = [orjson.dumps(tries[i : i + 40]) for i in range(0, len(tries), 40)]
    with GeoResolver() as geo:
        replay = Replay(Analyzer(geo, load_policy(None)))
        for m in messages:
            replay.read_line(m)
        expected = [a.id for a in replay.run()]

    asyncio.run(publish(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ACCESS"], messages))
    (alert,) = asyncio.run(consume(broker.bootstrap, worker.env["KEYWATCH_TOPIC_ALERTS"], 1))
    topic = worker.env["KEYWATCH_TOPIC_DEAD_LETTER"]
    letters = asyncio.run(consume(broker.bootstrap, topic, len(tries)))
    assert [alert["id"]] == expected  # live equals replay, id for id
    assert (alert["kind"], alert["key_id"]) == ("auth_abuse", "net:198.51.100.0/24")
    assert (alert["severity"], alert["action"]) == ("medium", "notify")
    (signal,) = alert["signals"]
    assert signal["type"] == "auth.burst"
    evidence = signal["evidence"]
    assert (evidence["attempts"], evidence["without_key"], evidence["distinct_keys"]) == (
        100, 66, 8,
    )  # fmt: skip
    assert not any(h in orjson.dumps(alert).decode() for h in hashes)  # prefixes only
    missing = [x for x in letters if x["reason"] == "missing_key"]
    assert len(missing) == 80 and len(letters) - len(missing) == 40
    assert {x["reason"] for x in letters} == {"missing_key", "unknown_key"}
    for letter in missing:  # each carries its own element and the detail it always had
        i = tries.index(letter["payload"])
        assert "key_hash" not in tries[i]
        assert orjson.loads(letter["detail"]) == {
            "reason": "missing_key", "detail": "no key_id, key hash or raw key", "index": i % 40,
        }  # fmt: skip

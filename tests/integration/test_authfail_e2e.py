"""On the real broker: a revoked key still tried, as the gateway reports it, raises an alert."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import orjson
import pytest

from tests.support.kafka import consume, publish
from tests.support.procs import Proc
from worker.devstack import EmbeddedBroker

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

"""The feedback agent's handler on a real SQLite key store, with PagerDuty and Slack local."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from detectors.model import Alert, Signal
from detectors.profile import KeyProfile
from tests.support.receiver import Receiver, serving
from worker.agents.feedback import FeedbackHandler
from worker.alerting.http import client
from worker.alerting.pagerduty import PagerDutySink
from worker.keystore.alerts import AlertStore
from worker.keystore.resolution import Resolver
from worker.keystore.service import KeyService
from worker.keystore.store import KeyStore
from worker.metrics import Metrics

SPIKE = {"type": "usage.spike", "severity": "high",
         "evidence": {"observed_per_hour": 5000, "baseline_per_hour": 30.0}}  # fmt: skip


class Harness:
    """A handler with the worker's pieces it touches: profiles, dead letters, the key store."""

    def __init__(self, db: Path, rx: Receiver, http: Any) -> None:
        self.db = db
        self.store = KeyStore(f"sqlite:///{db}")
        self.alerts = AlertStore(self.store)
        _, self.key = self.store.create("acme")
        self.letters: list[tuple[str, str]] = []
        ready = asyncio.Event()
        ready.set()
        self.kapp = SimpleNamespace(profiles={}, store_ready=ready, profile_checkpoint=None,
                                    dead_letter=self._dead, metrics=Metrics())  # fmt: skip
        self.pd = PagerDutySink(http, rx.url + "/pd", "R0UTINGKEY", self.alerts)
        resolver = Resolver(self.alerts, KeyService(self.store))
        self.handler = FeedbackHandler(self.kapp, resolver, http, self.pd)  # type: ignore[arg-type]

    async def _dead(self, reason: str, source: str, payload: Any, detail: str) -> None:
        self.letters.append((reason, detail))

    def message(self, alert_id: str, verdict: str, rx: Receiver) -> dict[str, Any]:
        return {"type": "resolution", "alert_id": alert_id, "key_id": self.key.key_id,
                "verdict": verdict, "actor": "slack:alice", "note": "via Slack",
                "response_url": rx.url + "/response",
                "message": {"text": "HIGH anomaly", "blocks": [{"type": "actions"}]}}  # fmt: skip


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with serving(Receiver()) as r:
        yield r


@pytest.fixture
async def harness(tmp_path: Path, rx: Receiver) -> AsyncIterator[Harness]:
    (tmp_path / "db").mkdir()
    async with client(timeout_s=5) as http:
        h = Harness(tmp_path / "db" / "kw.db", rx, http)
        yield h
        h.store.close()


def _bodies(rx: Receiver, path: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.body) for r in rx.received if r.path == path]


async def test_benign_teaches_the_profile_resolves_pagerduty_and_answers_slack(
    harness: Harness, rx: Receiver
) -> None:
    h, key = harness, harness.key.key_id
    h.alerts.record({"id": "A1", "key_id": key, "severity": "high", "action": "throttle",
                     "signals": [SPIKE]}, 3600)  # fmt: skip
    signal = Signal(SPIKE["type"], "high", SPIKE["evidence"])
    await h.pd.send(Alert("A1", "anomaly", key, None, 0.0, 0.0, "high", "throttle", [signal], ""))
    profile = KeyProfile()
    h.kapp.profiles[key] = profile.to_bytes()  # an idle key: kept as bytes in the table
    assert await h.handler.handle(h.message("A1", "benign", rx)) == "benign"
    taught = h.kapp.profiles[key]
    # the observed hourly volume became the key's busiest hour: it no longer stands out
    assert isinstance(taught, KeyProfile) and taught.peaks[2] == 5000
    assert h.alerts.get("A1").incident.status == "benign"
    pd = _bodies(rx, "/hook/pd")
    assert [(e["event_action"], e["dedup_key"]) for e in pd] == [
        ("trigger", f"keywatch/{key}/A1"), ("resolve", f"keywatch/{key}/A1")]  # fmt: skip
    assert h.alerts.pagerduty_open() == {}
    (update,) = _bodies(rx, "/hook/response")
    assert update["replace_original"] and "benign* by alice" in update["blocks"][-1]["text"]["text"]
    assert h.letters == []
    assert h.kapp.metrics.verdicts.labels(verdict="benign")._value.get() == 1


async def test_a_refused_verdict_is_dead_lettered_and_said_in_slack(
    harness: Harness, rx: Receiver
) -> None:
    h, key = harness, harness.key.key_id
    h.alerts.record({"id": "A1", "key_id": key, "severity": "high", "action": "revoke"}, 3600)
    assert await h.handler.handle(h.message("A1", "compromised", rx)) == "compromised"
    assert h.store.get(key).status == "revoked"
    assert await h.handler.handle(h.message("A1", "benign", rx)) == "refused"
    assert [r for r, _ in h.letters] == ["resolution_refused"]
    assert "not applied" in orjson.dumps(_bodies(rx, "/hook/response")[-1]).decode()
    bad = {"type": "resolution", "alert_id": "A1", "verdict": "maybe"}
    assert await h.handler.handle(bad) == "dead_letter"


async def test_a_verdict_waits_while_the_database_is_down(
    harness: Harness, rx: Receiver, tmp_path: Path
) -> None:
    h, key = harness, harness.key.key_id
    h.alerts.record({"id": "A1", "key_id": key, "severity": "high", "action": "notify"}, 3600)
    h.store.close()
    shutil.move(tmp_path / "db", tmp_path / "away")  # the database is gone
    task = asyncio.ensure_future(h.handler.handle(h.message("A1", "compromised", rx)))
    await asyncio.sleep(1.5)
    assert not task.done()  # waiting, not dropped, not dead-lettered
    shutil.move(tmp_path / "away", tmp_path / "db")
    assert await asyncio.wait_for(task, 60) == "compromised"
    assert h.store.get(key).status == "revoked" and h.letters == []


async def test_a_benign_verdict_on_a_network_alert_teaches_no_profile(
    harness: Harness, rx: Receiver
) -> None:
    """auth_abuse alerts name a network: its state in the table is not a key profile."""
    from detectors.auth_abuse import NetworkState

    h, net = harness, "net:198.51.100.0/24"
    enumeration = {"type": "auth.enumeration", "severity": "medium",
                   "evidence": {"network": "198.51.100.0/24", "distinct_keys": 10}}  # fmt: skip
    h.alerts.record({"id": "N1", "kind": "auth_abuse", "key_id": net, "severity": "medium",
                     "action": "notify", "signals": [enumeration]}, 3600)  # fmt: skip
    state = NetworkState([(1795000000.0, "0b9c2e3f4a5b", "invalid", "198.51.100.7")], 10)
    h.kapp.profiles[net] = state
    message = {**h.message("N1", "benign", rx), "key_id": net}
    assert await h.handler.handle(message) == "benign"
    assert h.kapp.profiles[net] is state and h.letters == []

"""`keywatch alerts` as a person uses it: list, show, tail (real broker), errors in one line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from core.keyformat import generate_key
from tests.support.events import anomaly_alert
from tests.support.kafka import publish
from tests.support.procs import ROOT, keywatch, keywatch_env
from worker.devstack import EmbeddedBroker
from worker.keystore.alerts import AlertStore
from worker.keystore.store import KeyStore

pytestmark = pytest.mark.services
SECRET = generate_key("live").secret  # planted in an alert: no output may contain it


def _alert(alert_id: str, key_id: str) -> dict[str, object]:
    return anomaly_alert(
        key_id, alert_id, "throttle", severity="high",
        signals=[{"type": "usage.spike", "severity": "high",
                  "evidence": {"observed_per_hour": 1210, "baseline_per_hour": 31.5}}],
        summary=f"Key {key_id} at 38x its usual rate; seen {SECRET}",
    )  # fmt: skip


def test_list_show_and_user_errors(
    broker: EmbeddedBroker, database_url: str, tmp_path: Path
) -> None:
    store = KeyStore(database_url)
    _, rec = store.create("acme")
    AlertStore(store).record(_alert("A1", rec.key_id), 3600)
    env = keywatch_env(broker.url, database_url, tmp_path)
    listed = keywatch("alerts", "list", "--open", env=env)
    assert listed.returncode == 0 and "A1" in listed.stdout and "open" in listed.stdout
    shown = keywatch("alerts", "show", "A1", env=env)
    assert "usage.spike" in shown.stdout and "status: open" in shown.stdout
    assert SECRET not in shown.stdout + listed.stdout
    (row,) = map(
        orjson.loads, keywatch("alerts", "show", "A1", "--json", env=env).stdout.splitlines()
    )
    assert {"id", "key_id", "ts", "severity", "action", "signals", "status"} <= set(row)
    for args in (("show", "NOPE"), ("resolve", "A1"), ("resolve", "NOPE", "--compromised")):
        bad = keywatch("alerts", *args, env=env)
        assert bad.returncode != 0 and bad.stderr.count("\n") == 1, bad.stderr
        assert "Traceback" not in bad.stderr
    store.close()


def test_tail_follows_the_topic_readably_and_redacted(
    broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path, topic_suffix: str
) -> None:
    topic = f"alerts-{topic_suffix}"
    env = keywatch_env(broker.url, sqlite_url, tmp_path, KEYWATCH_TOPIC_ALERTS=topic)
    asyncio.run(publish(broker.bootstrap, topic, [_alert("A7", "k7")]))
    out = tmp_path / "tail.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "alerts", "tail",
                                 "--from-beginning"], env=env, cwd=ROOT, stdout=sink,
                                stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "alert A7" not in out.read_text():
                time.sleep(0.25)
        finally:
            proc.terminate()
            proc.wait(10)
    text = out.read_text()
    assert "HIGH anomaly on key k7: throttle" in text and "`usage.spike` (high)" in text
    assert SECRET not in text and SECRET[:12] in text

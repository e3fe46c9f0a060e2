"""The profile stage: one table read and write per key per window, alerts in the contract shape."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
import structlog.testing

from detectors.analyzer import Analyzer
from detectors.model import AccessEvent
from detectors.profile import KeyProfile
from geoip.resolver import GeoResolver
from worker.agents.profiles import ProfileStage, live_profile
from worker.engine import IDLE_CHECKPOINTS, ChangelogTable, KeepBytesCodec
from worker.eventcodec import encode_batch, encode_rows, row_of
from worker.keycache import KeyCache
from worker.keystore.store import KeyStore
from worker.metrics import Metrics
from worker.partitioning import partition_for
from worker.reorder import Reorder, ReorderBounds

NOW = 1795000000.0
DE, RU = "5.9.0.1", "77.88.8.8"  # GeoLite2: Germany, Russia


class CountingTable(dict[str, KeyProfile | bytes]):
    """A mapping that counts reads and writes per key (the Faust table's interface used)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: dict[str, int] = {}
        self.writes: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key, default)

    def __setitem__(self, key: str, value: KeyProfile | bytes) -> None:
        self.writes[key] = self.writes.get(key, 0) + 1
        super().__setitem__(key, value)


class Sink:
    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, Any]]] = []
        self.letters: list[str] = []

    async def send(self, key_id: str, value: bytes) -> None:
        self.alerts.append((key_id, orjson.loads(value)))

    async def dead_letter(self, reason: str, source: str, payload: Any, detail: str = "") -> None:
        self.letters.append(reason)


@pytest.fixture(scope="module")
def geo() -> Iterator[GeoResolver]:
    with GeoResolver() as g:
        yield g


@pytest.fixture
def stage(geo: GeoResolver, sqlite_url: str) -> tuple[ProfileStage, CountingTable, Sink, Metrics]:
    store = KeyStore(sqlite_url)
    table, sink, metrics = CountingTable(), Sink(), Metrics()
    keys = KeyCache(store.find_many_by_hash, store.find_many)
    st = ProfileStage(table, Analyzer(geo), keys, sink.send, metrics, sink.dead_letter,
                      "events", clock=lambda: NOW)  # fmt: skip
    return st, table, sink, metrics


def history(key_id: str, days: float = 4, every_s: float = 900) -> list[AccessEvent]:
    """Ordinary use from Germany, ending an hour ago."""
    n = int(days * 86400 / every_s)
    start = NOW - 3600 - n * every_s
    return [AccessEvent(start + i * every_s, key_id, DE, "GET", "/v1/x", 200, account_id="acme")
            for i in range(n)]  # fmt: skip


async def test_each_key_is_read_and_written_once_per_window(stage: Any) -> None:
    st, table, _, metrics = stage
    events = history("k1", 1) + history("k2", 1)
    windows = [encode_batch(events[i : i + 50]) for i in range(0, len(events), 50)]
    await st.handle(windows)
    assert table.reads == {"k1": 1, "k2": 1}
    assert table.writes == {"k1": 1, "k2": 1}
    assert metrics.registry.get_sample_value("keywatch_events_analyzed_total") == len(events)
    await st.handle(windows[:1])
    assert table.writes["k1"] == 2


async def test_new_country_burst_after_learning_raises_one_contract_alert(stage: Any) -> None:
    st, table, sink, metrics = stage
    await st.handle([encode_batch(history("k1"))])
    assert table["k1"].learned
    assert sink.alerts == []
    # One request a minute: a new country, not a flood (a flood would add a revoke alert).
    burst = [AccessEvent(NOW - 1200 + 60 * i, "k1", RU, "GET", "/v1/x", 200, account_id="acme")
             for i in range(20)]  # fmt: skip
    await st.handle([encode_batch(burst)])
    key, alert = sink.alerts[0]
    assert key == "k1"
    assert {"id", "kind", "key_id", "account_id", "ts", "detected_at", "severity", "action",
            "signals", "summary"} <= alert.keys()  # fmt: skip
    assert (alert["kind"], alert["key_id"], alert["account_id"]) == ("anomaly", "k1", "acme")
    types = {s["type"] for s in alert["signals"]}
    assert "geo.new_country" in types
    new_country = next(s for s in alert["signals"] if s["type"] == "geo.new_country")
    assert new_country["evidence"]["country"] == "RU"
    assert alert["ts"].endswith("Z") and alert["detected_at"].endswith("Z")
    counted = metrics.registry.get_sample_value(
        "keywatch_alerts_total", {"type": "geo.new_country", "severity": alert["severity"]}
    )
    assert counted == len(sink.alerts)
    assert metrics.registry.get_sample_value("keywatch_detection_lag_seconds_count") >= 1


async def test_two_sources_out_of_step_give_the_alerts_of_event_time_order(
    geo: GeoResolver, sqlite_url: str
) -> None:
    store = KeyStore(sqlite_url)
    keys = KeyCache(store.find_many_by_hash, store.find_many)

    def new_stage(on_done: Any = lambda _t: None) -> tuple[ProfileStage, Sink]:
        sink = Sink()
        reorder = Reorder(ReorderBounds(), clock=lambda: NOW)
        st = ProfileStage(CountingTable(), Analyzer(geo), keys, sink.send, Metrics(),
                          sink.dead_letter, "events", clock=lambda: NOW, reorder=reorder,
                          on_done=on_done)  # fmt: skip
        return st, sink

    burst = [AccessEvent(NOW - 1200 + 20 * i, "k1", RU, "GET", "/v1/x", 200, account_id="acme")
             for i in range(60)]  # fmt: skip
    events = history("k1") + burst
    in_order, reference = new_stage()
    await in_order.handle([encode_batch(events)])
    assert reference.alerts

    done: list[Any] = []
    st, sink = new_stage(done.extend)
    by_source = {1: events[0::2], 2: events[1::2]}  # a round-robin load balancer, two nodes
    messages = [
        (
            0,
            encode_rows([row_of(e) for e in evs[i : i + 20]], ((s, len(evs[i : i + 20])),), (1, 2)),
            (s, i),
        )
        for s, evs in by_source.items()
        for i in range(0, len(evs), 20)
    ]  # node 1's whole stream reaches the worker before node 2's
    for i in range(0, len(messages), 7):
        await st.handle_window(messages[i : i + 7])
    await st.drain()
    assert [a for _, a in sink.alerts] == [a for _, a in reference.alerts]
    assert sorted(done) == sorted(m[2] for m in messages) and st.reorder.late == 0


async def test_bad_batch_is_dead_lettered_and_the_rest_analyzed(stage: Any) -> None:
    st, table, sink, _ = stage
    await st.handle([b"\x00garbage", encode_batch(history("k3", 0.1))])
    assert sink.letters == ["bad_batch"]
    assert "k3" in table


async def test_one_failing_key_does_not_stop_the_others(stage: Any) -> None:
    st, table, sink, _ = stage
    table["bad"] = "not a profile"
    await st.handle([encode_batch(history("bad", 0.1) + history("good", 0.1))])
    assert sink.letters == ["analysis_failed"]
    assert isinstance(table["good"], KeyProfile)


def test_changelog_codec_keeps_bytes_until_a_key_is_used() -> None:
    prof = KeyProfile()
    codec = KeepBytesCodec()
    stored = codec.loads(codec.dumps(prof))
    assert stored == prof.to_bytes()  # recovery decodes nothing up front
    live = live_profile(stored)
    assert isinstance(live, KeyProfile) and live.to_bytes() == prof.to_bytes()
    assert live_profile(live) is live
    assert live_profile(None) is None
    assert codec.dumps(stored) == stored


def test_idle_keys_go_back_to_bytes(tmp_path: Path) -> None:
    app = faust.App("kw-unit", store="memory://", datadir=str(tmp_path))
    table = ChangelogTable(app, name="profiles", partitions=4, partition_of=partition_for)
    hot, idle = KeyProfile(), KeyProfile()
    table.data["hot"], table.data["idle"] = hot, idle
    table._records.update(hot=hot.to_bytes(), idle=idle.to_bytes())
    table._changed_at.update(hot=IDLE_CHECKPOINTS, idle=1)
    table._compact(IDLE_CHECKPOINTS + 1)
    assert table.data["hot"] is hot
    assert table.data["idle"] == idle.to_bytes()
    assert table.partition_for_key("idle") == partition_for("idle", 4)


async def test_an_alert_the_broker_refused_is_retried_before_the_window_ends(
    stage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The profile counts the alert as raised: handle() must not return until it is sent."""
    from aiokafka.errors import KafkaTimeoutError

    st, _, sink, _ = stage
    monkeypatch.setattr(asyncio, "sleep", _no_wait)
    await st.handle([encode_batch(history("k1"))])
    refusals = 2
    real_send = st.send_alert

    async def flaky(key_id: str, value: bytes) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise KafkaTimeoutError()
        await real_send(key_id, value)

    st.send_alert = flaky
    burst = [AccessEvent(NOW - 60 + i, "k1", RU, "GET", "/v1/x", 200, account_id="acme")
             for i in range(20)]  # fmt: skip
    alerts = await st.handle([encode_batch(burst)])
    assert alerts and refusals == 0
    assert [a["id"] for _, a in sink.alerts] == [a.id for a in alerts]


_real_sleep = asyncio.sleep


async def _no_wait(delay: float) -> None:
    await _real_sleep(0)


async def test_a_stuck_window_makes_the_tick_say_so_instead_of_waiting(
    geo: GeoResolver, sqlite_url: str
) -> None:
    """A window whose sends never complete holds the stage; the tick does not queue behind it
    but logs what has been held past the maximum hold, once per interval."""
    store = KeyStore(sqlite_url)
    clock = [NOW]
    reorder = Reorder(ReorderBounds(idle_s=2.0, max_hold_s=30.0), clock=lambda: clock[0])
    st = ProfileStage(CountingTable(), Analyzer(geo), KeyCache(store.find_many_by_hash,
                      store.find_many), Sink().send, Metrics(), Sink().dead_letter, "events",
                      clock=lambda: NOW, reorder=reorder)  # fmt: skip
    early = [AccessEvent(NOW - 60, "k1", DE, "GET", "/v1/x", 200)]
    late = [AccessEvent(NOW - 30, "k2", DE, "GET", "/v1/x", 200)]
    reorder.add(0, ((1, 1),), early, "a")
    reorder.add(0, ((2, 1),), late, "b")
    assert reorder.release()[0] == early  # source 1 is behind: k2's event waits
    assert reorder.held == 1
    clock[0] = NOW + 40  # past the maximum hold, and a window is stuck in a send
    await st._lock.acquire()
    try:
        with structlog.testing.capture_logs() as logs:
            assert await asyncio.wait_for(st.tick(), 1.0) == []
            await st.tick()  # within the interval: not logged again
        overdue = [e for e in logs if e["event"] == "reorder_overdue"]
        assert len(overdue) == 1 and overdue[0]["analysing"] is True
        assert overdue[0]["partitions"][0]["held"] == 1
    finally:
        st._lock.release()
    await st.tick()  # the window finished: the next tick releases it
    assert reorder.held == 0

"""Pins every Faust/aiokafka internal that worker.engine relies on.

An upgrade of faust-streaming or aiokafka that changes one of them fails here, by name, before
it can quietly break the changelog, acknowledgements, fetch latency or recovery.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from faust.events import Event
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import Message

from detectors.profile import KeyProfile
from worker import engine
from worker.engine import (
    SEAL_KEY,
    ChangelogTable,
    Checkpoint,
    bound_fetch_wait,
    seal_before_recovery,
)
from worker.partitioning import partition_for


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[faust.App]:
    """A Faust app that is never started (nothing here talks to a broker)."""
    app = faust.App("kw-engine", broker="kafka://127.0.0.1:1", store="memory://",
                    datadir=str(tmp_path))  # fmt: skip
    yield app
    if app._consumer is not None:  # created by a test: its thread's loop never ran
        app.consumer._thread.thread_loop.close()  # type: ignore[attr-defined]


def table_of(app: faust.App) -> ChangelogTable:
    return ChangelogTable(app, name="profiles", partitions=4, partition_of=partition_for)


async def test_fetch_wait_reaches_the_aiokafka_consumer(app: faust.App) -> None:
    bound_fetch_wait(123)
    consumer = app.consumer._thread._create_worker_consumer(app.transport)  # type: ignore[attr-defined]
    try:
        assert consumer._fetch_max_wait_ms == 123
    finally:
        await consumer.stop()
    # aiokafka hands the attribute to its fetcher when the consumer starts
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in inspect.getsource(AIOKafkaConsumer.start)


async def test_an_assignment_only_marks_the_key(app: faust.App) -> None:
    table, profile = table_of(app), KeyProfile()
    table["k1"] = profile  # Faust's __setitem__ -> on_key_set: no send outside a stream
    assert table.dirty == {"k1"}
    assert table.data["k1"] is profile
    assert table.changelog_topic.get_topic_name() == "kw-engine-profiles-changelog"


def test_the_producer_takes_the_changelog_record_positionally() -> None:
    params = list(inspect.signature(faust_aiokafka.Producer.send).parameters)
    assert params[:7] == ["self", "topic", "key", "value", "partition", "timestamp", "headers"]


async def test_flush_sends_each_marked_key_once_to_its_partition(app: faust.App) -> None:
    table, sent = table_of(app), []

    async def send(*args: Any) -> Any:
        sent.append(args)
        return _done()  # the record's future: any awaitable

    app.producer.send = send  # type: ignore[method-assign]
    for key in ("a", "b", "a"):
        table[key] = KeyProfile()
    assert await table.flush_changelog() == 2
    assert sorted((a[1], a[3]) for a in sent) == [
        (b"a", partition_for("a", 4)),
        (b"b", partition_for("b", 4)),
    ]
    assert await table.flush_changelog() == 0  # nothing changed since


async def _done() -> None:
    return None


async def test_a_failed_flush_keeps_its_keys_marked(app: faust.App) -> None:
    """A record the producer did not deliver (timed out) is sent again at the next flush."""
    table, sent = table_of(app), []

    async def refused() -> None:
        raise TimeoutError("producer request timed out")

    async def send(*args: Any) -> Any:
        sent.append(args[1])
        return refused() if len(sent) == 1 else _done()

    app.producer.send = send  # type: ignore[method-assign]
    table["a"] = KeyProfile()
    with pytest.raises(TimeoutError):
        await table.flush_changelog()
    assert table.dirty == {"a"}
    assert await table.flush_changelog() == 1 and sent == [b"a", b"a"]


async def test_a_send_refused_at_once_keeps_every_key_marked(app: faust.App) -> None:
    """The producer can refuse a record before returning its future (buffer full, closed)."""
    table = table_of(app)

    async def send(*args: Any) -> Any:
        raise RuntimeError("producer closed")

    app.producer.send = send  # type: ignore[method-assign]
    for key in ("a", "b"):
        table[key] = KeyProfile()
    with pytest.raises(RuntimeError):
        await table.flush_changelog()
    assert table.dirty == {"a", "b"}


async def test_a_held_message_is_acknowledged_only_after_the_flush(app: faust.App) -> None:
    flushed: list[int] = []

    class Table:
        async def flush_changelog(self) -> int:
            flushed.append(1)
            return 1

    message = Message("t", 0, 5, 0.0, 0, [], b"k", b"v", None)
    event = Event(app, b"k", b"v", {}, message)
    message.incref()  # the stream's own reference
    checkpoint = Checkpoint(Table())  # type: ignore[arg-type]
    checkpoint.hold([event])
    assert event.ack() is False and not message.acked  # the stream's ack alone is not final
    assert await checkpoint.flush() == 1
    assert message.acked and flushed == [1]


async def test_retained_messages_are_acknowledged_in_offset_order(app: faust.App) -> None:
    class Table:
        async def flush_changelog(self) -> int:
            return 0

    messages = [Message("t", 0, offset, 0.0, 0, [], b"k", b"v", None) for offset in (5, 6, 7)]
    events = [Event(app, b"k", b"v", {}, m) for m in messages]
    for m in messages:
        m.incref()  # the stream's own reference
    checkpoint = Checkpoint(Table())  # type: ignore[arg-type]
    checkpoint.retain(events)
    for e in events:
        e.ack()  # the stream is done with them; the checkpoint is not
    checkpoint.done([events[1], events[2]])  # 5 is still held for event-time order
    await checkpoint.flush()
    assert [m.acked for m in messages] == [False, False, False] and checkpoint.open == 3
    checkpoint.done([events[0]])
    await checkpoint.flush()
    assert [m.acked for m in messages] == [True, True, True] and checkpoint.open == 0


def test_windows_come_from_take_events() -> None:
    params = inspect.signature(faust.Stream.take_events).parameters
    assert "within" in params


async def test_a_tombstone_for_an_absent_key_changes_nothing(app: faust.App) -> None:
    table = table_of(app)
    table.data["k1"] = b"profile"
    seal = SimpleNamespace(key=SEAL_KEY.decode(), value=None,
                           message=SimpleNamespace(value=None, partition=1))  # fmt: skip
    table.apply_changelog_batch([seal])  # type: ignore[list-item]
    assert dict(table.data.items()) == {"k1": b"profile"}


def test_recovery_reads_end_offsets_in_build_highwaters() -> None:
    params = list(inspect.signature(Recovery._build_highwaters).parameters)
    assert params == ["self", "consumer", "tps", "destination", "title"]
    source = inspect.getsource(Recovery._restart_recovery.fun)
    assert "self._build_highwaters" in source
    assert 'active_highwaters, "active"' in source  # the title that marks active partitions
    auth = faust_aiokafka.credentials_to_aiokafka_auth(None, None)
    assert auth.get("security_protocol", "PLAINTEXT") == "PLAINTEXT"


class FakeConsumer:
    """Answers ListOffsets with ``ends`` (one call per read)."""

    def __init__(self, ends: dict[TP, int]) -> None:
        self.ends, self.calls = ends, 0

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        self.calls += 1
        return {tp: self.ends[tp] for tp in tps}


@pytest.mark.parametrize("mode, seals", [("on", 1), ("off", 0)])
async def test_only_non_empty_partitions_are_sealed_and_read_again(
    app: faust.App, monkeypatch: pytest.MonkeyPatch, mode: str, seals: int
) -> None:
    empty, used = TP("c", 0), TP("c", 1)
    sealer = seal_before_recovery(app, mode)
    sealed: list[list[TP]] = []

    async def seal(tps: Any) -> float:
        sealed.append(list(tps))
        return 0.0

    monkeypatch.setattr(sealer, "seal", seal)
    consumer, destination = FakeConsumer({empty: 0, used: 7}), Counter[TP]()
    await app.tables.recovery._build_highwaters(consumer, {empty, used}, destination, "active")  # type: ignore[attr-defined]
    assert sealed == [[used]][:seals]
    assert consumer.calls == 1 + seals
    assert destination == {empty: -1, used: 6}  # Faust keeps end - 1


async def test_auto_mode_seals_on_tansu_only(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["tansu_cluster", "Qx9c1xDvRm2N6lqrC5w3Zw"])

    async def cluster_id(_: Any) -> str:
        return next(answers)

    monkeypatch.setattr(engine, "broker_cluster_id", cluster_id)
    assert await engine.ChangelogSealer(app, "auto").needed() is True
    assert await engine.ChangelogSealer(app, "auto").needed() is False


async def test_a_failed_seal_leaves_recovery_to_the_reported_ends(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    used = TP("c", 1)
    sealer = seal_before_recovery(app, "on")

    async def seal(tps: Any) -> float:
        raise ConnectionError("broker gone")

    monkeypatch.setattr(sealer, "seal", seal)
    consumer, destination = FakeConsumer({used: 7}), Counter[TP]()
    await app.tables.recovery._build_highwaters(consumer, {used}, destination, "active")  # type: ignore[attr-defined]
    assert destination == {used: 6} and consumer.calls == 1


async def test_standby_partitions_are_not_sealed(
    app: faust.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A standby keeps reading past the end, and another worker owns the partition."""
    used = TP("c", 1)
    sealer = seal_before_recovery(app, "on")
    sealed: list[Any] = []

    async def seal(tps: Any) -> float:
        sealed.append(tps)
        return 0.0

    monkeypatch.setattr(sealer, "seal", seal)
    consumer, destination = FakeConsumer({used: 7}), Counter[TP]()
    await app.tables.recovery._build_highwaters(consumer, {used}, destination, "standby")  # type: ignore[attr-defined]
    assert sealed == [] and destination == {used: 6}


async def test_a_failed_checkpoint_keeps_its_keys_and_acks_for_the_next() -> None:
    """A changelog send that fails (the producer timed out) loses neither the changed keys
    nor the acknowledgements waiting for them: the next flush sends and acknowledges both."""

    class Table:
        def __init__(self) -> None:
            self.fail = True
            self.flushed = 0

        async def flush_changelog(self) -> int:
            if self.fail:
                raise TimeoutError("producer request timed out")
            self.flushed += 1
            return 1

    class FakeEvent:
        def __init__(self) -> None:
            self.acked = 0
            self.message = self

        def incref(self) -> None:
            pass

        def ack(self) -> None:
            self.acked += 1

    table = Table()
    checkpoint = Checkpoint(table)  # type: ignore[arg-type]
    event = FakeEvent()
    checkpoint.hold([event])  # type: ignore[list-item]
    with pytest.raises(TimeoutError):
        await checkpoint.flush()
    assert event.acked == 0
    table.fail = False
    assert await checkpoint.flush() == 1
    assert event.acked == 1 and table.flushed == 1

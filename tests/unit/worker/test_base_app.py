"""``KeywatchApp``, the base of every keywatch process: its reconciler tick (the Redis view is
rebuilt first and on its own, a failed rebuild is retried at the next tick, and neither a down
Redis nor a slow announcement holds up the other steps) and its sends to the broker."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from core.errors import KeyStoreUnavailable
from worker.base import KeywatchApp
from worker.settings import Settings


class Keys:
    """Stands in for ``KeyService``: records the steps and fails or blocks on request."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.needs_repair = False
        self.repair_fails: Exception | None = None
        self.drain_gate: asyncio.Event | None = None

    async def redis_needs_repair(self) -> bool:
        return self.needs_repair

    async def repair_redis(self) -> int:
        self.steps.append("repair")
        if self.repair_fails is not None:
            raise self.repair_fails
        return 0

    async def expire_due(self) -> list[object]:
        self.steps.append("expire")
        return []

    async def drain(self) -> int:
        self.steps.append("drain")
        if self.drain_gate is not None:
            await self.drain_gate.wait()
        return 0


@pytest.fixture
def kw(tmp_path: Path) -> KeywatchApp:
    settings = Settings.from_env({
        "KEYWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'keys.db'}",
        "KEYWATCH_DATA_DIR": str(tmp_path / "data"),
    })  # fmt: skip
    app = KeywatchApp(settings, "keywatch-test-reconcile", 6099)  # never started
    app.keys = Keys()  # type: ignore[assignment]
    app.store_ready.set()
    return app


async def test_the_view_is_rebuilt_before_a_slow_announcement(kw: KeywatchApp) -> None:
    keys: Keys = kw.keys  # type: ignore[assignment]
    await kw._reconcile()  # first tick: the periodic repair
    keys.steps.clear()
    keys.drain_gate = asyncio.Event()  # an announcement waiting on the broker
    keys.needs_repair = True  # Redis restarted without its data
    tick = asyncio.create_task(kw._reconcile())
    await asyncio.sleep(0.05)
    assert keys.steps == ["repair", "expire", "drain"] and not tick.done()
    keys.drain_gate.set()
    await tick


async def test_a_failed_repair_is_retried_at_the_next_tick(kw: KeywatchApp) -> None:
    keys: Keys = kw.keys  # type: ignore[assignment]
    keys.repair_fails = KeyStoreUnavailable("redis unavailable: connection reset")
    await kw._reconcile()
    # Redis down: the database steps still run, and gateways still hear on the broker
    assert keys.steps == ["repair", "expire", "drain"]
    assert kw.store_error is None  # a Redis failure is not a key-store failure
    keys.steps.clear()
    keys.repair_fails = None
    await kw._reconcile()  # the marker may be set already: the repair is still due
    assert keys.steps == ["repair", "expire", "drain"]
    keys.steps.clear()
    await kw._reconcile()  # done: no repair until the marker goes or the periodic one
    assert keys.steps == ["expire", "drain"]


async def test_a_database_failure_is_reported_and_cleared(kw: KeywatchApp) -> None:
    keys: Keys = kw.keys  # type: ignore[assignment]
    keys.repair_fails = KeyStoreUnavailable("key store unavailable: connection refused")
    await kw._reconcile()
    assert kw.store_error is None  # expire_due read the database after: it answers again
    keys.repair_fails = None

    async def down() -> list[object]:
        raise KeyStoreUnavailable("key store unavailable: connection refused")

    keys.expire_due = down  # type: ignore[method-assign]
    await kw._reconcile()
    assert kw.store_error == "key store unavailable: connection refused"
    assert "drain" not in keys.steps[-1:]  # no drain without the database


async def test_a_record_goes_to_the_producer_as_topic_send_would(kw: KeywatchApp) -> None:
    sent: list[tuple[object, ...]] = []

    async def send(*args: object) -> asyncio.Future[None]:
        sent.append(args)
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    kw.app.producer.send = send  # type: ignore[method-assign]
    kw.app.producer.maybe_start = _started  # type: ignore[method-assign]
    await kw.produce(kw.dead_letter_topic, b"v", b"k", 3)
    await kw.produce(kw.key_actions_topic, b"w")
    assert sent == [
        (kw.settings.topics.dead_letter, b"k", b"v", 3, None, None),
        (kw.settings.topics.key_actions, None, b"w", None, None, None),
    ]


async def test_a_failed_send_raises_and_leaves_no_unread_error(kw: KeywatchApp) -> None:
    """Faust's ``topic.send`` also fails a FutureMessage that nobody reads: after a broker error,
    asyncio logged "FutureMessage exception was never retrieved" once per record."""
    loop = asyncio.get_running_loop()
    unread: list[object] = []
    loop.set_exception_handler(lambda _loop, context: unread.append(context.get("message")))

    async def send(*args: object, **kwargs: object) -> asyncio.Future[None]:
        failed = loop.create_future()
        failed.set_exception(TimeoutError("producer request timed out"))
        return failed

    kw.app.producer.send = send  # type: ignore[method-assign]
    kw.app.producer.maybe_start = _started  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await kw.produce(kw.dead_letter_topic, b"v")
    gc.collect()  # an error nobody read is reported when its future is collected
    assert unread == []


async def _started() -> None:
    return None

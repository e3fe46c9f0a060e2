"""The worker's reconciler tick (``KeywatchApp._reconcile``): the Redis view is rebuilt first and
on its own, a failed rebuild is retried at the next tick, and neither a down Redis nor a slow
announcement holds up the other steps."""

from __future__ import annotations

import asyncio
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

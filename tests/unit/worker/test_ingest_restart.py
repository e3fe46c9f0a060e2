"""A failing ingest consumer is restarted, counted and logged, never silently stopped."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

import worker.agents.ingest as ingest
from worker.metrics import Metrics
from worker.settings import Settings


async def test_a_consumer_that_fails_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "RESTART_MIN_S", 0.01)
    metrics = Metrics()
    kapp = SimpleNamespace(settings=Settings(), metrics=metrics, consuming=True)
    consumer = ingest.IngestConsumer(kapp, stage=None)  # type: ignore[arg-type]
    calls = 0
    third = asyncio.Event()

    async def failing() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("broker said no")
        third.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(consumer, "_consume", failing)
    task = asyncio.create_task(consumer.run())
    await asyncio.wait_for(third.wait(), 10)
    assert not task.done()  # still consuming after two failures
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    restarts = metrics.registry.get_sample_value(
        "keywatch_consumer_restarts_total", {"consumer": "ingest"}
    )
    assert restarts == 2

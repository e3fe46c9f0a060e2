"""The broker goes away under a running worker: it backs off, logs the change once, and still
stops within seconds of SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.kafka import topics_env
from tests.support.procs import keywatch_env, running
from worker.devstack import EmbeddedBroker

pytestmark = [pytest.mark.services, pytest.mark.slow]

GONE_S = 20.0
MAX_LINES_PER_S = 2.0  # a state change and a few reminders, not a line per retry
MAX_STOP_S = 10.0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, to be stopped under the worker."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as b:
        yield b


async def test_a_worker_whose_broker_is_gone_is_quiet_and_stops_on_sigterm(
    own_broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, tmp_path: Path
) -> None:
    env = keywatch_env(own_broker.url, sqlite_url, tmp_path, **topics_env(topic_suffix))
    with running(["worker"], env, tmp_path / "worker.log") as worker:
        await asyncio.sleep(2)
        own_broker.stop()
        before = len(worker.output().splitlines())
        await asyncio.sleep(GONE_S)
        during = worker.output().splitlines()[before:]
        started = time.monotonic()
        code = await asyncio.to_thread(worker.stop, signal.SIGTERM, 30.0)
        took = time.monotonic() - started
    rate = len(during) / GONE_S
    print(f"{rate:.2f} lines/s while gone; SIGTERM took {took:.1f}s")
    assert rate <= MAX_LINES_PER_S, f"{rate:.1f} lines/s while the broker was gone:\n" + "\n".join(
        during[-40:]
    )
    assert took <= MAX_STOP_S, f"SIGTERM took {took:.1f}s (exit {code})"

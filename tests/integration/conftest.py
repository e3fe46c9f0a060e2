"""Fixtures the end-to-end tests share: a running worker with topics of its own, a fake GitHub."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import codehost
from tests.support.kafka import create_topics, topics_env
from tests.support.procs import Proc, keywatch_env, running
from worker.devstack import EmbeddedBroker


@pytest.fixture
def worker(
    broker: EmbeddedBroker, sqlite_url: str, tmp_path: Path, topic_suffix: str
) -> Iterator[Proc]:
    """A running ``keywatch worker`` with topics of its own (``proc.env["KEYWATCH_TOPIC_*"]``)
    and its access topic created up front."""
    env = keywatch_env(
        broker.url, sqlite_url, tmp_path, KEYWATCH_SESSION_TIMEOUT_S="3",
        KEYWATCH_FLUSH_INTERVAL_S="0.05", **topics_env(topic_suffix),
    )  # fmt: skip
    asyncio.run(create_topics(broker.bootstrap, [env["KEYWATCH_TOPIC_ACCESS"]]))
    with running(["worker"], env, tmp_path / "worker.log") as proc:
        yield proc


@pytest.fixture
def fake_github() -> Iterator[codehost.FakeGitHub]:
    """A fake GitHub API serving compares of acme/app (set ``.files``; ``.repo = None``: any)."""
    with codehost.fake_github() as server:
        yield server

"""Fixtures the end-to-end tests share: a running worker with topics of its own, a fake GitHub,
``keywatch`` commands run in-process against a key store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.support import codehost
from tests.support.kafka import create_topics, topics_env
from tests.support.procs import Proc, keywatch_env, running
from worker.cli import cli
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


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str]]:
    """``run("keys", "create", ...)``: a keywatch command in-process on ``database_url`` (both
    databases), with no broker (announcements wait in the outbox) and no Redis; exit code and
    stdout."""
    monkeypatch.setenv("KEYWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("KEYWATCH_BROKER", "kafka://127.0.0.1:1")
    monkeypatch.delenv("KEYWATCH_REDIS_URL", raising=False)
    runner = CliRunner()

    def invoke(*args: str) -> tuple[int, str]:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        return result.exit_code, result.stdout

    return invoke

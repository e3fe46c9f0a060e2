"""worker.supervisor: metrics summed over processes, the process count, the crash limit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.metrics import Metrics
from worker.settings import Settings
from worker.supervisor import MAX_CRASHES, Supervisor, default_processes, merge_metrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text.decode())
        for s in fam.samples
    }


def test_metrics_of_processes_are_summed_per_sample() -> None:
    a, b = Metrics(), Metrics()
    a.analyzed.inc(5)
    b.analyzed.inc(7)
    a.events.labels(format="kong").inc(3)
    b.events.labels(format="native").inc(2)
    a.batch_events.observe(10)
    b.batch_events.observe(1000)
    merged = samples(merge_metrics([a.render().decode(), b.render().decode()]))
    assert merged[("keywatch_events_analyzed_total", ())] == 12
    assert merged[("keywatch_events_total", (("format", "kong"),))] == 3
    assert merged[("keywatch_events_total", (("format", "native"),))] == 2
    count = next(v for (n, _), v in merged.items() if n.endswith("batch_events_count"))
    assert count == 2


def test_no_process_answering_gives_an_empty_exposition() -> None:
    assert merge_metrics([]) == b""


def test_process_count_from_settings_else_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_processes(Settings(worker_processes=3)) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 5})
    assert default_processes(Settings(worker_processes=0)) == 3


class Dead:
    """A child that has exited."""

    pid, returncode = 4242, 1

    def poll(self) -> int:
        return 1


def test_a_dead_child_is_restarted_until_it_keeps_dying(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[list[Any], str | None]:
        sup = Supervisor(Settings(), 2, "WARNING")
        respawned: list[int] = []
        monkeypatch.setattr(sup, "_spawn", lambda i: respawned.append(i))
        monkeypatch.setattr("worker.supervisor.RESTART_DELAY_S", 0.0)
        for _ in range(MAX_CRASHES - 1):
            sup.procs = [None, Dead()]  # type: ignore[list-item]
            sup._check()
            assert sup.failed is None
            await asyncio.sleep(0.01)
        sup.procs = [None, Dead()]  # type: ignore[list-item]
        sup._check()
        return respawned, sup.failed

    respawned, failed = asyncio.run(scenario())
    assert respawned == [1] * (MAX_CRASHES - 1)
    assert failed is not None and "died 3 times" in failed


def test_processes_option_rejects_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "worker", "--processes", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "processes" in done.stderr

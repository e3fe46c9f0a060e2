"""``keywatch dev`` starts the broker, worker and scanner, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.procs import ROOT


def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,sid="], capture_output=True, text=True).stdout
    rows = [tuple(int(x) for x in line.split()) for line in out.splitlines() if line.strip()]
    found, frontier = set(), {pid}
    while frontier:
        nxt = {p for p, pp, _ in rows if pp in frontier} - found
        found |= nxt
        frontier = nxt
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.timeout(150)
def test_dev_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dev", "--data-dir", str(tmp_path / "dev")],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C to stop" in line:
            break
    text = "".join(lines)
    assert "Ctrl-C to stop" in text, text
    worker_url = re.search(r"worker\s+(http://\S+/health)", text)
    broker_url = re.search(r"broker\s+kafka://127\.0\.0\.1:(\d+)", text)
    assert worker_url and broker_url, text
    assert httpx.get(worker_url.group(1), timeout=5).status_code == 200
    assert "sqlite:///" in text and str(tmp_path / "dev") in text
    children = _children(proc.pid)
    assert len(children) >= 3  # broker, worker, scanner (and their helpers)

    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert time.monotonic() - started < 15
    assert "stopped." in rest
    leftovers = [pid for pid in children if _alive(pid)]
    assert leftovers == []


@pytest.mark.timeout(180)
def test_demo_revokes_a_compromised_key(tmp_path: Path) -> None:
    """The README's first command: the demo shows a compromise revoked within a minute."""
    import sqlalchemy as sa

    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWATCH_")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200")
    data = tmp_path / "dev"
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dev", "--demo", "--data-dir", str(data)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            done = "".join(seen)
            if "first revocation" in done and re.search(r"slack .*CRITICAL", done):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    text = "".join(seen) + rest
    found = re.search(r"first revocation ([0-9.]+)s after the demo began", text)
    assert found, text[-3000:]
    assert float(found.group(1)) < 60
    engine = sa.create_engine(f"sqlite:///{data / 'keywatch.db'}")
    with engine.connect() as conn:
        revoked = conn.execute(sa.text("SELECT count(*) FROM kw_keys WHERE status='revoked'"))
        audit = conn.execute(sa.text("SELECT count(*) FROM kw_key_audit WHERE action='revoke'"))
        assert revoked.scalar() == 1 and audit.scalar() == 1
    engine.dispose()
    assert re.search(r"slack  \(http://127\.0\.0\.1:\d+/services/demo\) .*CRITICAL", text), text[
        -3000:
    ]

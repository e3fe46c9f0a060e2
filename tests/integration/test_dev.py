"""``keywatch dev`` starts the broker, worker and scanner, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.procs import clean_env, keywatch


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


def _start_dev(tmp_path: Path, **popen: object) -> tuple[subprocess.Popen[str], str]:
    """``keywatch dev`` in ``tmp_path`` with no KEYWATCH_* variables; returns it and its banner."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dev"],
        env=clean_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        **popen,  # type: ignore[call-overload]
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 100
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C to stop" in line:
            break
    text = "".join(lines)
    assert "Ctrl-C to stop" in text, text
    return proc, text


def _gone(pids: set[int], within: float) -> list[int]:
    """The pids still alive after waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


@pytest.mark.timeout(150)
def test_dev_runs_everything_hands_off_and_stops_cleanly(tmp_path: Path) -> None:
    import redis

    proc, text = _start_dev(tmp_path)
    worker_url = re.search(r"worker\s+(http://\S+/health)", text)
    broker_url = re.search(r"broker\s+kafka://127\.0\.0\.1:(\d+)", text)
    assert worker_url and broker_url, text
    assert httpx.get(worker_url.group(1), timeout=5).status_code == 200
    assert "sqlite:///" in text and str(tmp_path / ".keywatch" / "dev") in text
    children = _children(proc.pid)
    assert len(children) >= 5  # broker, Redis, worker, scanner, gateway

    # the handoff: a second terminal in the same directory talks to this stack
    handoff = (tmp_path / ".keywatch" / "dev" / "env").read_text()
    values = dict(
        line.split("=", 1) for line in handoff.splitlines() if line.startswith("KEYWATCH_")
    )
    assert set(values) == {
        "KEYWATCH_BROKER", "KEYWATCH_DATABASE_URL", "KEYWATCH_REDIS_URL",
        "KEYWATCH_GATEWAY_LISTEN",
    }  # fmt: skip
    assert values["KEYWATCH_BROKER"] == f"kafka://127.0.0.1:{broker_url.group(1)}"
    gateway = f"http://{values['KEYWATCH_GATEWAY_LISTEN']}"
    assert re.search(rf"gateway\s+{re.escape(gateway)}", text), text
    assert redis.Redis.from_url(values["KEYWATCH_REDIS_URL"]).ping()
    created = keywatch("keys", "create", "--account", "acme", "--json", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    key_id, key = json.loads(created.stdout)["key_id"], json.loads(created.stdout)["key"]
    # the stack's gateway (ext_authz shape) checks the key against the same store and Redis
    auth = {"Authorization": f"Bearer {key}"}
    allowed = httpx.get(f"{gateway}/v1/users", headers=auth, timeout=5)
    assert allowed.status_code == 200 and allowed.headers["x-keywatch-key-id"] == key_id
    started = time.monotonic()
    revoked = keywatch("keys", "revoke", key_id, "--reason", "handoff test", cwd=tmp_path)
    assert revoked.returncode == 0 and revoked.stderr == "", revoked.stderr
    assert time.monotonic() - started < 10
    listed = json.loads(keywatch("keys", "list", "--json", cwd=tmp_path).stdout)
    assert [(k["key_id"], k["status"]) for k in listed] == [(key_id, "revoked")]
    # the stack's Redis view and key-actions announcement happened (not left pending)
    view = redis.Redis.from_url(values["KEYWATCH_REDIS_URL"])
    assert view.scard("apikey:revoked") == 1
    refused = httpx.get(f"{gateway}/v1/users", headers=auth, timeout=5)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "api_key_revoked"

    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, rest
    assert time.monotonic() - started < 15
    assert "stopped." in rest
    assert _gone(children, 5) == []
    assert not (tmp_path / ".keywatch" / "dev" / "env").exists()


def _ignore_sigint() -> None:
    # what a non-interactive shell does for `keywatch dev &`
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["background-sigint", "sighup", "sigterm", "sigkill"])
def test_every_signal_stops_the_whole_stack(tmp_path: Path, how: str) -> None:
    """Ctrl-C on a background stack, a closed terminal, or kill -9: no process is left."""
    popen: dict[str, object] = {"start_new_session": True}
    if how == "background-sigint":
        popen["preexec_fn"] = _ignore_sigint
    proc, _text = _start_dev(tmp_path, **popen)
    children = _children(proc.pid)
    assert len(children) >= 5
    sig = {"background-sigint": signal.SIGINT, "sighup": signal.SIGHUP,
           "sigterm": signal.SIGTERM}.get(how, signal.SIGKILL)  # fmt: skip
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    if how != "sigkill":
        assert proc.returncode == 0
    # SIGKILL gives keywatch dev no chance to clean up: the kernel's death signal does it
    assert _gone(children, 20) == []


@pytest.mark.timeout(180)
def test_demo_revokes_a_compromised_key(tmp_path: Path) -> None:
    """The README's first command: the demo shows a compromise revoked within a minute, and its
    HTTP clients see the gateway's 200s turn into 429s (throttle) and 401s (revocation)."""
    import sqlalchemy as sa

    env = clean_env(COLUMNS="200")
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
            if (
                "first revocation" in done
                and re.search(r"slack .*CRITICAL", done)
                and ("The stack keeps running; Ctrl-C stops it." in done)
            ):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    text = "".join(seen) + rest
    found = re.search(r"first revocation ([0-9.]+)s after the demo began", text)
    assert found, text[-3000:]
    assert float(found.group(1)) < 60
    # the closing summary: what happened and what to try next
    assert "--demo starts from a fresh data directory" not in text  # nothing existed yet
    assert re.search(r"demo finished: [\d,]+ events from 8 keys", text), text[-3000:]
    assert re.search(r"  revoked: [0-9a-f]{16} \(\w+\)", text)
    assert "keywatch keys list" in text
    # alerts are printed with their event time; TTLs as durations
    assert re.search(r"action throttle [0-9a-f]{16} for 1h: ", text), text[-3000:]
    # real HTTP through the sample API behind the gateway middleware
    throttled = re.search(r"http   ([0-9a-f]{16}) \(\w+\): 200 -> 429 api_key_throttled", text)
    revoked_http = re.search(r"http   ([0-9a-f]{16}) \(\w+\): 200 -> 401 api_key_revoked", text)
    assert throttled and revoked_http, text[-3000:]
    assert re.search(rf"action throttle {throttled.group(1)} ", text)
    assert re.search(rf"action revoke {revoked_http.group(1)}", text)
    summary = re.search(r"HTTP through the gateway \(\S+\): (.*)", text)
    assert summary and all(f"x {s}" in summary.group(1) for s in (200, 401, 429)), text[-3000:]
    engine = sa.create_engine(f"sqlite:///{data / 'keywatch.db'}")
    with engine.connect() as conn:
        revoked = conn.execute(sa.text("SELECT count(*) FROM kw_keys WHERE status='revoked'"))
        audit = conn.execute(sa.text("SELECT count(*) FROM kw_key_audit WHERE action='revoke'"))
        # the office key is revoked; the throttled key may be too, if its attacker's refused
        # requests keep adding volume (the demo does not stop them) - once each, never twice
        n_revoked = revoked.scalar()
        assert n_revoked in (1, 2) and audit.scalar() == n_revoked
    engine.dispose()
    assert re.search(r"slack  \(http://127\.0\.0\.1:\d+/services/demo\) .*CRITICAL", text), text[
        -3000:
    ]

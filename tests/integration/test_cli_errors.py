"""User errors are one line on stderr and a non-zero exit, found before the work starts."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.procs import Proc, clean_env, keywatch, keywatch_env
from worker.devstack import EmbeddedBroker, free_port


def _one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    lines = [line for line in result.stderr.splitlines() if line.startswith("keywatch: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["worker", "scanner"])
def test_no_broker_waits_then_one_line(tmp_path: Path, command: str) -> None:
    port = free_port()
    started = time.monotonic()
    env = clean_env(KEYWATCH_BROKER=f"kafka://127.0.0.1:{port}", KEYWATCH_BROKER_WAIT_S="2")
    result = keywatch(command, env=env, cwd=tmp_path, timeout=90)
    assert time.monotonic() - started < 30
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"keywatch: waiting for the Kafka broker at kafka://127.0.0.1:{port} (up to 2 s; "
        "KEYWATCH_BROKER_WAIT_S)…",
        f"keywatch: error: no Kafka broker answered at kafka://127.0.0.1:{port} "
        "(KEYWATCH_BROKER) within 2 s",
    ]


@pytest.mark.timeout(120)
def test_the_worker_starts_once_the_broker_appears(tmp_path: Path, sqlite_url: str) -> None:
    """As in compose: the worker is up before Kafka; it waits, then consumes."""
    port = free_port()
    env = keywatch_env(f"kafka://127.0.0.1:{port}", sqlite_url, tmp_path,
                       KEYWATCH_BROKER_WAIT_S="0")  # fmt: skip
    proc = Proc(["worker"], env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 20
        while "waiting for the Kafka broker" not in proc.output():
            assert time.monotonic() < deadline and proc.proc.poll() is None, proc.output()
            time.sleep(0.2)
        time.sleep(2)
        assert proc.proc.poll() is None  # still waiting, not crashed
        with EmbeddedBroker(port=port, log_path=tmp_path / "tansu.log"):
            proc.wait_healthy(timeout=90)
            body = httpx.get(f"http://127.0.0.1:{env['KEYWATCH_WEB_PORT']}/health").json()
            assert body["down"] == {}
            # outside `keywatch dev`, the packaged 2018 GeoIP snapshot is reported at start
            assert "geoip_database_stale" in proc.output()
            # the container health check reads the same settings as the worker
            ports = {k: env[k] for k in ("KEYWATCH_WEB_PORT", "KEYWATCH_SCANNER_WEB_PORT")}
            shell = clean_env(**ports)
            assert keywatch("health", env=shell, cwd=tmp_path).returncode == 0
            assert keywatch("health", "--of", "worker", env=shell, cwd=tmp_path).returncode == 0
            scanner = keywatch("health", "--of", "scanner", env=shell, cwd=tmp_path)
            assert scanner.returncode == 1 and scanner.stderr.startswith("unhealthy: scanner")
            proc.stop()  # while the broker runs
    finally:
        proc.stop()
    assert "Traceback" not in (tmp_path / "worker.log").read_text()


def test_replay_and_simulate_check_output_paths_first(tmp_path: Path) -> None:
    traffic = tmp_path / "t.jsonl"
    sim = keywatch("simulate", "--keys", "2", "--days", "3", "--out", str(traffic), cwd=tmp_path)
    assert sim.returncode == 0, sim.stderr
    missing = tmp_path / "missing" / "dir"
    for args, option in [
        (["replay", str(traffic), "--out", f"{missing}/a.jsonl"], "--out"),
        (["replay", str(traffic), "--out", "-", "--report", f"{missing}/r.html"], "--report"),
        (["simulate", "--out", f"{missing}/a.jsonl"], "--out"),
        (["simulate", "--out", "-", "--labels", f"{missing}/l.jsonl"], "--labels"),
        (["simulate", "--out", str(tmp_path)], "--out"),
    ]:
        started = time.monotonic()
        result = keywatch(*args, cwd=tmp_path)
        line = _one_error(result)
        assert line.startswith(f"keywatch: error: {option}: "), line
        assert result.stdout == ""  # no work was done
        assert time.monotonic() - started < 20


@pytest.mark.parametrize("content", [b"", b'{"hello": "world"}\n', b"not json\n"])
def test_replay_without_a_usable_event_fails(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    line = _one_error(keywatch("replay", str(path), "--out", str(tmp_path / "a"), cwd=tmp_path))
    assert line.startswith(f"keywatch: error: no usable event in {path}")


@pytest.mark.parametrize(
    ("command", "option", "content", "message"),
    [
        ("replay", "--policy", '[signals."geo.new_country"]\nmode = "huge"\n',
         'signals."geo.new_country".mode: expected one of enforce, log, got "huge"'),
        ("replay", "--policy", "[delivery]\nmax_attempts = 0\n",
         "delivery.max_attempts: expected an integer >= 1, got 0"),
        ("scan", "--rules", '[[rules]]\nid = "x"\n',
         "rules[0].description: missing (required)"),
    ],
)  # fmt: skip
def test_a_bad_policy_or_rules_file_is_one_line_naming_the_path(
    tmp_path: Path, command: str, option: str, content: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    target = tmp_path / "in.txt"
    target.write_text("nothing here\n")
    result = keywatch(command, str(target), option, str(config), cwd=tmp_path, timeout=90)
    assert result.returncode == 2
    prefix = "keywatch scan" if command == "scan" else "keywatch"  # scan's own error prefix
    assert result.stderr.splitlines() == [f"{prefix}: error: {config}: {message}"]

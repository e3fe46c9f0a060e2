"""The dev-stack handoff file: written by ``keywatch dev``, read by every other command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from worker import devenv

VALUES = {
    "KEYWATCH_BROKER": "kafka://127.0.0.1:40001",
    "KEYWATCH_DATABASE_URL": "sqlite:////tmp/with space/keywatch.db",
    "KEYWATCH_REDIS_URL": "redis://127.0.0.1:40002/0",
}


def _write(tmp_path: Path, pid: int) -> Path:
    path = tmp_path / devenv.HANDOFF
    path.parent.mkdir(parents=True)
    devenv.write(path, {**VALUES, "KEYWATCH_WEB_PORT": "1"}, pid=pid)
    return path


def test_round_trip_keeps_only_the_contract_variables(tmp_path: Path) -> None:
    path = _write(tmp_path, os.getpid())
    assert devenv.read(path) == (os.getpid(), VALUES)


def test_the_file_is_shell_syntax(tmp_path: Path) -> None:
    path = _write(tmp_path, os.getpid())
    out = subprocess.run(
        ["sh", "-c", f'set -a; . "{path}"; echo "$KEYWATCH_DATABASE_URL"'],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == VALUES["KEYWATCH_DATABASE_URL"]


def test_load_fills_only_unset_variables(tmp_path: Path) -> None:
    _write(tmp_path, os.getpid())
    environ = {"KEYWATCH_BROKER": "kafka://elsewhere:9092", "KEYWATCH_REDIS_URL": ""}
    used, warning = devenv.load(environ, tmp_path)
    assert used == tmp_path / devenv.HANDOFF and warning is None
    assert environ == {**VALUES, "KEYWATCH_BROKER": "kafka://elsewhere:9092"}


def test_a_stale_file_is_ignored_with_a_warning(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write(tmp_path, dead.pid)
    environ: dict[str, str] = {}
    used, warning = devenv.load(environ, tmp_path)
    assert used is None and environ == {}
    assert warning is not None and f"pid {dead.pid}" in warning


def test_no_file_no_change(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    assert devenv.load(environ, tmp_path) == (None, None)
    assert environ == {}

"""Running the gateway as a child process and waiting for it (tests and benchmarks; ``keywatch
dev`` runs it as one more child of ``worker.devstack.DevStack``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import httpx


def gateway_command(listen: str) -> list[str]:
    """The command line of ``keywatch gateway`` on ``listen`` with this interpreter."""
    return [sys.executable, "-m", "worker.cli", "gateway", "--listen", listen]


def sample_api_command(listen: str) -> list[str]:
    """The sample API behind ``KeywatchMiddleware`` (for the demo)."""
    return [sys.executable, "-m", "gateway.sample_api", "--listen", listen]


def start(
    command: list[str], env: Mapping[str, str], log: Path | IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """Start a gateway process with ``env`` over the current environment."""
    if isinstance(log, Path):
        with log.open("ab") as out:  # the child keeps its own descriptor
            return _popen(command, env, out)
    return _popen(command, env, log if log is not None else subprocess.DEVNULL)


def _popen(
    command: list[str], env: Mapping[str, str], out: IO[bytes] | int
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
    )


def wait_healthy(listen: str, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Wait for ``GET /health`` to answer 200; raises RuntimeError if the process died."""
    deadline = time.monotonic() + timeout_s
    url = f"http://{listen}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with status {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gateway on {listen} not healthy after {timeout_s:.0f}s")


def start_gateway(
    listen: str, env: Mapping[str, str], log: Path | IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """``keywatch gateway --listen LISTEN`` as a child, returned once healthy."""
    proc = start(gateway_command(listen), env, log)
    try:
        wait_healthy(listen, proc)
    except RuntimeError:
        proc.terminate()
        proc.wait(10)
        raise
    return proc

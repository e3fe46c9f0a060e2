"""Child processes that die with their parent: one process group each, and a death signal.

``keywatch dev`` and the test-suite start brokers, Redis and keywatch processes. Each child gets
its own process group (so one ``killpg`` stops it and whatever it started) and, on Linux,
``PR_SET_PDEATHSIG``: the kernel sends the child SIGTERM the moment its parent dies, even
when the parent is killed with SIGKILL and has no chance to clean up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PR_SET_PDEATHSIG = 1  # ref: <linux/prctl.h>

_prctl: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl


def _die_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn``: ask for SIGTERM when ``parent`` dies; exit if it already has."""

    def setup() -> None:
        # Runs in the forked child before exec: only async-signal-safe work (the libc function
        # was looked up in the parent).
        if _prctl is not None:
            _prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os._exit(1)

    return setup


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
    stdout: int | IO[Any] | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group that dies with this process.

    Output goes to ``log`` (appended) when given, else to ``stdout`` (default: discarded).
    ``popen`` passes more ``subprocess.Popen`` arguments (``user``, ``group``...).
    """
    out: int | IO[Any] = subprocess.DEVNULL if stdout is None else stdout
    handle = open(log, "ab") if log is not None else None  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(  # noqa: S603 - callers pass fixed programs
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=handle or out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with(os.getpid()),  # prctl must run in the child, before exec
            **popen,
        )
    finally:
        if handle is not None:
            handle.close()  # the child holds its own copy


def stop(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 8.0) -> None:
    """SIGTERM each child's process group, wait, then SIGKILL what is left; reaps them all."""

    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

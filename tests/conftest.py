"""Shared fixtures: the real broker (Tansu), Redis and the SQL databases.

Service fixtures never skip: a missing Redis, PostgreSQL or broker fails the test, so CI cannot
go green without them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from worker.devstack import EmbeddedBroker

# Property tests: a small default for local runs, 10k cases per test in CI, more at night.
settings.register_profile("dev", max_examples=300, deadline=None)
settings.register_profile(
    "ci", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "nightly", max_examples=200_000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Each pytest-xdist worker gets its own Redis database (gw0 -> 15, gw1 -> 14, ...).
_XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
REDIS_URL = os.environ.get(
    "KEYWATCH_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{15 - _XDIST_INDEX % 12}"
)
POSTGRES_URL = os.environ.get(
    "KEYWATCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


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
def redis_url() -> Iterator[str]:
    """A clean Redis database (the real server; fails when Redis does not answer)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis is required at {REDIS_URL}: {exc}")
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


def _postgres_schema_url() -> Iterator[str]:
    import sqlalchemy as sa

    schema = f"kw_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL is required at {POSTGRES_URL}: {exc}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty key-store database: an SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keywatch.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite key store, for tests that do not need to run on both databases."""
    return f"sqlite:///{tmp_path / 'keywatch.db'}"

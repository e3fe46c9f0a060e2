"""``keys create --rate-limit`` and ``keys limits`` on SQLite and PostgreSQL, and the schema
upgrade that adds the column to a version-1 key store."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
import sqlalchemy as sa

from worker.keystore.schema import CURRENT_VERSION, ensure_schema
from worker.keystore.store import KeyStore

pytestmark = pytest.mark.services
V1 = "INSERT INTO kw_schema_version (version, applied_at) VALUES (1, '2026-01-01 00:00:00')"


def test_create_with_limits_then_change_them(run, database_url: str) -> None:  # type: ignore[no-untyped-def]
    code, out = run("keys", "create", "--account", "acme", "--rate-limit", "10/second",
                    "--rate-limit", "1000/day", "--json")  # fmt: skip
    assert code == 0
    key_id = orjson.loads(out)["key_id"]
    shown = orjson.loads(run("keys", "show", key_id, "--json")[1])
    assert shown["rate_limits"] == ["10/second", "1000/day"]
    code, out = run("keys", "limits", key_id, "--rate-limit", "5/minute", "--json")
    assert code == 0 and orjson.loads(out)["changed"] is True
    assert orjson.loads(out)["rate_limits"] == ["5/minute"]
    assert (
        orjson.loads(run("keys", "limits", key_id, "--rate-limit", "5/minute", "--json")[1])[
            "changed"
        ]
        is False
    )
    assert run("keys", "limits", key_id)[1].strip() == f"{key_id}: 5/minute"
    run("keys", "limits", key_id, "--clear")
    assert orjson.loads(run("keys", "limits", key_id, "--json")[1])["rate_limits"] == []
    store = KeyStore(database_url)
    try:
        actions = [a.action for a in store.audit(key_id)]
    finally:
        store.close()
    assert actions.count("limits") == 2


def test_bad_limit_is_one_line(database_url: str) -> None:
    env = {"KEYWATCH_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    import os

    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "keys", "create", "--account", "a",
         "--rate-limit", "10/fortnight"], capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "keywatch: error: bad rate limit '10/fortnight': expected N/second|minute|hour|day"
    ]


def test_upgrade_from_version_1_is_idempotent(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        ensure_schema(engine)
        with engine.begin() as conn:  # make it look like a version-1 store
            conn.execute(sa.text("ALTER TABLE kw_keys DROP COLUMN rate_limits"))
            conn.execute(sa.text("DELETE FROM kw_schema_version"))
            conn.execute(sa.text(V1))
        assert ensure_schema(engine) == CURRENT_VERSION
        columns = {c["name"] for c in sa.inspect(engine).get_columns("kw_keys")}
        assert "rate_limits" in columns
        with engine.begin() as conn:  # a step run twice (renumbered at merge) is harmless
            conn.execute(sa.text("DELETE FROM kw_schema_version"))
            conn.execute(sa.text(V1))
        assert ensure_schema(engine) == CURRENT_VERSION
    finally:
        engine.dispose()
    store = KeyStore(database_url)
    try:
        _, rec = store.create("acme", rate_limits=["3/hour"])
        assert store.get(rec.key_id).rate_limits == ("3/hour",)
    finally:
        store.close()

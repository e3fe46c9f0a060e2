"""The gateway-links schema step on SQLite and PostgreSQL: applied once, idempotent."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from worker.keystore.links import find_many_identities, link
from worker.keystore.schema import CURRENT_VERSION, UPGRADES, ensure_schema
from worker.keystore.store import KeyStore

pytestmark = pytest.mark.services


def test_a_version_1_store_gains_links_and_the_outbox_claim(database_url: str) -> None:
    store = KeyStore(database_url)
    try:
        _check(store)
    finally:
        store.close()


def _check(store: KeyStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE kw_gateway_links"))
        conn.execute(sa.text("ALTER TABLE kw_outbox DROP COLUMN claimed_until"))
        conn.execute(sa.text("DELETE FROM kw_schema_version WHERE version > 1"))
    assert ensure_schema(store.engine) == CURRENT_VERSION
    with store.engine.begin() as conn:
        for step in UPGRADES:  # again, on a store that has them: nothing happens
            step(conn)
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("kw_outbox")}
    assert "claimed_until" in columns
    _, rec = store.create("acme")
    assert link(store, rec.key_id, "4d9c2a7e-3b1f-4e6a-9c8d-2f5b7a1e0c93", "kong_credential")
    found = find_many_identities(store, [rec.key_id, "4d9c2a7e-3b1f-4e6a-9c8d-2f5b7a1e0c93"])
    assert {r.key_id for r in found.values()} == {rec.key_id} and len(found) == 2

"""Gateway credential and consumer ids linked to keywatch keys (``keywatch keys link``).

Kong's ``hide_credentials`` leaves only ``authenticated_entity.id`` (a Kong credential UUID) and
the consumer in its log. A link says which keywatch key that credential (or consumer) is, so the
ingest resolves it to the key instead of profiling an id no action can reach.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa

from core.errors import KeyStoreError
from worker.keystore.models import ApiKey, GatewayLink
from worker.keystore.store import KeyRecord, KeyStore, utcnow

KINDS: Final = ("kong_credential", "kong_consumer")


def link(store: KeyStore, key_id: str, gateway_id: str, kind: str, actor: str = "cli") -> bool:
    """Map ``gateway_id`` to ``key_id``; True when something changed (a repeat changes nothing)."""
    if kind not in KINDS:
        raise KeyStoreError(f"link kind must be one of {', '.join(KINDS)}")
    gateway_id = gateway_id.strip().lower()
    if not gateway_id or len(gateway_id) > 128:
        raise KeyStoreError("a gateway id must be 1-128 characters")
    store.get(key_id)  # KeyNotFound for a key that does not exist
    with store._session() as s, s.begin():
        row = s.get(GatewayLink, gateway_id)
        if row is not None and (row.key_id, row.kind) == (key_id, kind):
            return False
        if row is None:
            s.add(GatewayLink(gateway_id=gateway_id, kind=kind, key_id=key_id,
                              created_at=utcnow()))  # fmt: skip
        else:
            row.key_id, row.kind = key_id, kind
        store._audit(s, s.get(ApiKey, key_id), "link", None, actor, None, utcnow(),  # type: ignore[arg-type]
                     {"gateway_id": gateway_id, "kind": kind})  # fmt: skip
        return True


def find_many_linked(store: KeyStore, gateway_ids: Sequence[str]) -> dict[str, KeyRecord]:
    """The key each linked gateway id stands for (ids matched case-insensitively)."""
    wanted = {g.lower(): g for g in gateway_ids if g}
    if not wanted:
        return {}
    q = (
        sa.select(GatewayLink.gateway_id, ApiKey)
        .join(ApiKey, ApiKey.key_id == GatewayLink.key_id)
        .where(GatewayLink.gateway_id.in_(list(wanted)))
    )
    with store._session() as s:
        return {wanted[gid]: KeyRecord.of(row) for gid, row in s.execute(q)}


def find_many_identities(store: KeyStore, ids: Sequence[str]) -> dict[str, KeyRecord]:
    """Records for ids that are key ids or linked gateway ids (one bulk lookup each)."""
    found = store.find_many(ids)
    rest = [i for i in ids if i not in found]
    if rest:
        found.update(find_many_linked(store, rest))
    return found

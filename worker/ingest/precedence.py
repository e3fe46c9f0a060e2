"""Which key a request is counted against: the credential the gateway authenticated.

A request can name a key twice: the gateway's authenticated identity (Kong's
``authenticated_entity.id``, AWS's ``apiKeyId``, an Envoy key-id field, native ``key_id``) and a
raw key the client sent (``X-Api-Key``, ``?api_key=``), hashed at parse time. The client controls
the second one, so it never decides the identity when the first is known: a thief holding key A
who adds their own key B would otherwise file A's traffic under B. A raw key that is not the
authenticated key is kept as evidence (``extra_key_hash``), a finding of its own.

The raw key is the identity only when the gateway named no key keywatch knows. A Kong credential
UUID (``hide_credentials``) must be linked to a key (``keywatch keys link``); an unlinked one is
an identity keywatch cannot resolve, dead-lettered as ``unknown_key`` rather than profiled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Protocol

from worker.ingest.model import RawAccess

_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


class Known(Protocol):
    """What the key store says about a key (``KeyContext`` or ``KeyInfo``)."""

    @property
    def key_id(self) -> str: ...

    @property
    def account_id(self) -> str | None: ...


def must_link(raw: RawAccess) -> bool:
    """True for a gateway-internal credential id (a Kong UUID): it must resolve through a link."""
    key_id = raw.key_id  # a UUID is 36 characters: most ids are decided by the length alone
    return (
        raw.fmt == "kong"
        and key_id is not None
        and len(key_id) == 36
        and _UUID.fullmatch(key_id) is not None
    )


def needs_identity(raw: RawAccess) -> bool:
    """True when the gateway's id must be looked up to decide (a raw key too, or a Kong UUID)."""
    return raw.key_id is not None and (raw.key_hash is not None or must_link(raw))


def gateway_known(raw: RawAccess, known: Mapping[str, Known | None]) -> Known | None:
    """The key the gateway's credential id (else its consumer id) resolves to, if any."""
    hit = known.get(raw.key_id) if raw.key_id is not None else None
    if hit is None and raw.consumer_id is not None and must_link(raw):
        hit = known.get(raw.consumer_id)
    return hit


def decide(
    raw: RawAccess, by_hash: Known | None, by_gateway: Known | None, *, links: bool = True
) -> tuple[str, str | None] | str:
    """(key id, account) the event counts against, or why it cannot be attributed.

    Sets ``raw.extra_key_hash`` when the request carried a key other than the identity.
    ``links=False`` (no key store to hold links, e.g. an offline replay) keeps Kong UUIDs.
    """
    if by_gateway is not None:
        if raw.key_hash is not None and (by_hash is None or by_hash.key_id != by_gateway.key_id):
            raw.extra_key_hash = raw.key_hash
        return by_gateway.key_id, by_gateway.account_id or raw.account_id
    if by_hash is not None:
        return by_hash.key_id, by_hash.account_id or raw.account_id
    if raw.key_id is not None and not (links and must_link(raw)):
        return raw.key_id, raw.account_id  # a gateway's own key ids: still analyzed
    if raw.key_id is not None:
        return "gateway credential id is not linked to a key (keywatch keys link)"
    return "key hash not found in the key store"

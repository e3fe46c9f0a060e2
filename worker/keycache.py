"""Key-store lookups for the hot path: bulk, in a thread, cached with expiry.

The ingest stage resolves key hashes and the profile stage needs each key's context (account,
environment, status) once per batch. Both ask for many keys at once; only the ones not cached
(or expired) reach the database, in one ``IN`` query per batch. Misses are cached too, briefly,
so a flood of unknown hashes (key enumeration) cannot hammer the store (seed design: "cache
negative result briefly to prevent enumeration attacks").
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

import structlog

from core.errors import KeyStoreUnavailable
from detectors.model import KeyContext
from worker.keystore.store import KeyRecord

log = structlog.get_logger("keywatch.keycache")

DEFAULT_TTL: Final = 60.0  # key status changes also reach us via the key service; 1 min is fresh
DEFAULT_NEGATIVE_TTL: Final = 10.0  # short: a key issued a moment ago must resolve soon
DEFAULT_MAX_SIZE: Final = 200_000

BulkLookup = Callable[[Sequence[str]], Mapping[str, KeyRecord]]


def context_of(record: KeyRecord) -> KeyContext:
    """The policy-facing view of a key record, with its effective status."""
    status = record.status_at(datetime.now(UTC))
    return KeyContext(record.key_id, record.account_id, record.environment, status)


class _Expiring:
    """An LRU of values with per-entry expiry (``None`` is a cached miss)."""

    def __init__(self, max_size: int, clock: Callable[[], float]) -> None:
        self.max_size, self.clock = max_size, clock
        self.data: OrderedDict[str, tuple[float, KeyContext | None]] = OrderedDict()

    def split(self, keys: Iterable[str]) -> tuple[dict[str, KeyContext | None], list[str]]:
        """Cached values and the keys that must be looked up."""
        now, hits, missing = self.clock(), {}, []
        for k in keys:
            entry = self.data.get(k)
            if entry is not None and entry[0] > now:
                hits[k] = entry[1]
            else:
                missing.append(k)
        return hits, missing

    def put(self, key: str, value: KeyContext | None, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds, evicting the least recently stored."""
        self.data[key] = (self.clock() + ttl, value)
        self.data.move_to_end(key)
        while len(self.data) > self.max_size:
            self.data.popitem(last=False)


class KeyCache:
    """Bulk, cached key-store lookups by key hash and by key id."""

    def __init__(
        self,
        by_hash: BulkLookup,
        by_id: BulkLookup,
        *,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        max_size: int = DEFAULT_MAX_SIZE,
        clock: Callable[[], float] = time.monotonic,
        by_identity: BulkLookup | None = None,
    ) -> None:
        self._by_hash, self._by_id = by_hash, by_id
        # key ids and linked gateway ids (worker.keystore.links); plain key ids when not given
        self._by_identity = by_identity or by_id
        self.ttl, self.negative_ttl = ttl, negative_ttl
        self.hashes = _Expiring(max_size, clock)
        self.ids = _Expiring(max_size, clock)
        self.identity_cache = _Expiring(max_size, clock)
        self.queries = 0  # database round trips, for tests and metrics

    async def resolve_hashes(self, hashes: Iterable[str]) -> dict[str, KeyContext | None]:
        """Context per key hash (None: unknown); raises KeyStoreUnavailable (retry later)."""
        hits, missing = self.hashes.split(set(hashes))
        if missing:
            found = await self._query(self._by_hash, missing)
            self._remember(self.hashes, missing, found, hits)
        return hits

    def use_identities(self, lookup: BulkLookup) -> None:
        """Resolve gateway identities with ``lookup`` (key ids plus linked gateway ids)."""
        self._by_identity = lookup

    async def identities(self, ids: Iterable[str]) -> dict[str, KeyContext | None]:
        """Context per key id or linked gateway id; raises KeyStoreUnavailable (retry later)."""
        hits, missing = self.identity_cache.split(set(ids))
        if missing:
            found = await self._query(self._by_identity, missing)
            self._remember(self.identity_cache, missing, found, hits)
        return hits

    async def contexts(self, key_ids: Iterable[str]) -> dict[str, KeyContext | None]:
        """Context per key id (None: unknown to the store, or the store is down)."""
        hits, missing = self.ids.split(set(key_ids))
        if missing:
            try:
                found = await self._query(self._by_id, missing)
            except KeyStoreUnavailable as exc:
                # Detection goes on with default contexts; the next batch asks again.
                log.warning("key_context_unavailable", error=str(exc), keys=len(missing))
                return {**hits, **dict.fromkeys(missing)}
            self._remember(self.ids, missing, found, hits)
        return hits

    def _remember(
        self,
        cache: _Expiring,
        missing: list[str],
        found: Mapping[str, KeyRecord],
        hits: dict[str, KeyContext | None],
    ) -> None:
        """Cache the store's answers for ``missing`` (unknown: a miss, for ``negative_ttl``) and
        add them to ``hits``."""
        for k in missing:
            rec = found.get(k)
            ctx = context_of(rec) if rec is not None else None
            cache.put(k, ctx, self.ttl if ctx else self.negative_ttl)
            hits[k] = ctx

    async def _query(self, lookup: BulkLookup, keys: list[str]) -> Mapping[str, KeyRecord]:
        self.queries += 1
        try:
            return await asyncio.to_thread(lookup, keys)
        except KeyStoreUnavailable:
            raise
        except Exception as exc:  # the store converts its own errors; anything else: same
            raise KeyStoreUnavailable(f"key lookup failed: {exc}") from exc

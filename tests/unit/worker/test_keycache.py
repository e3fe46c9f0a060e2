"""Cached bulk key lookups against a real (SQLite) key store."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest

from core.errors import KeyStoreUnavailable
from detectors.model import KeyContext
from worker.keycache import KeyCache
from worker.keystore.store import KeyRecord, KeyStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(sqlite_url: str) -> KeyStore:
    return KeyStore(sqlite_url)


Lookup = Callable[[Sequence[str]], Mapping[str, KeyRecord]]


class Counting:
    """Counts the keys each bulk lookup asks the store for."""

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup
        self.calls: list[list[str]] = []

    def __call__(self, keys: Sequence[str]) -> Mapping[str, KeyRecord]:
        self.calls.append(sorted(keys))
        return self.lookup(keys)


async def test_hashes_resolve_in_one_query_then_from_cache(store: KeyStore) -> None:
    new, rec = store.create("acme", "test")
    by_hash = Counting(store.find_many_by_hash)
    cache = KeyCache(by_hash, store.find_many, clock=Clock())
    found = await cache.resolve_hashes([new.key_hash, "0" * 64, new.key_hash])
    assert found[new.key_hash] == KeyContext(rec.key_id, "acme", "test", "active")
    assert found["0" * 64] is None
    assert await cache.resolve_hashes([new.key_hash, "0" * 64]) == found
    assert by_hash.calls == [sorted([new.key_hash, "0" * 64])]


async def test_misses_expire_sooner_than_hits(store: KeyStore) -> None:
    clock = Clock()
    by_id = Counting(store.find_many)
    cache = KeyCache(store.find_many_by_hash, by_id, ttl=60, negative_ttl=10, clock=clock)
    _, rec = store.create("acme")
    await cache.contexts([rec.key_id, "nope"])
    clock.now += 11
    await cache.contexts([rec.key_id, "nope"])
    assert by_id.calls[1] == ["nope"]  # the hit is still fresh, the miss is asked again
    clock.now += 60
    await cache.contexts([rec.key_id, "nope"])
    assert by_id.calls[2] == sorted([rec.key_id, "nope"])


async def test_status_changes_show_after_expiry(store: KeyStore) -> None:
    clock = Clock()
    cache = KeyCache(store.find_many_by_hash, store.find_many, ttl=60, clock=clock)
    _, rec = store.create("acme")
    assert (await cache.contexts([rec.key_id]))[rec.key_id].status == "active"  # type: ignore[union-attr]
    store.revoke(rec.key_id, "test")
    clock.now += 61
    assert (await cache.contexts([rec.key_id]))[rec.key_id].status == "revoked"  # type: ignore[union-attr]


def _broken(keys: Sequence[str]) -> Mapping[str, KeyRecord]:
    raise RuntimeError("database is gone")


async def test_store_outage_raises_for_hashes_and_defaults_contexts() -> None:
    cache = KeyCache(_broken, _broken)
    with pytest.raises(KeyStoreUnavailable):
        await cache.resolve_hashes(["a" * 64])
    assert await cache.contexts(["k1"]) == {"k1": None}
    assert len(cache.ids.data) == 0  # an outage is not cached as "unknown"


async def test_lru_is_bounded(store: KeyStore) -> None:
    cache = KeyCache(store.find_many_by_hash, store.find_many, max_size=3)
    await cache.contexts([f"k{i}" for i in range(10)])
    assert len(cache.ids.data) == 3

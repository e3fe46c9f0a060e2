"""KeyResolver: hash and id lookups, LRU and TTL caching, negative caching, unknown keys."""

from __future__ import annotations

import pytest

from core.errors import InputError
from worker.ingest import KeyInfo, KeyResolver, RawAccess

H1, H2 = "a" * 64, "b" * 64
STORE = {H1: KeyInfo("kid-1", "acme", "live", "active")}
IDS = {"kid-9": KeyInfo("kid-9", "globex", "test", "deprecated")}


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def counting(table: dict[str, KeyInfo]) -> tuple[list[str], object]:
    calls: list[str] = []

    def lookup(key: str) -> KeyInfo | None:
        calls.append(key)
        return table.get(key)

    return calls, lookup


def raw(key_id: str | None = None, key_hash: str | None = None) -> RawAccess:
    return RawAccess(
        ts=1.8e9, ip="81.2.69.160", key_id=key_id, key_hash=key_hash, account_id="from-event"
    )


@pytest.mark.parametrize(
    ("record", "key_id", "account"),
    [
        (raw(key_hash=H1), "kid-1", "acme"),
        (raw(key_id="gw-id", key_hash=H1), "kid-1", "acme"),  # the hash is the key used
        (raw(key_id="kid-9"), "kid-9", "globex"),
        (raw(key_id="gw-only"), "gw-only", "from-event"),  # unknown id: kept as the gateway said
        (raw(key_id="gw-only", key_hash=H2), "gw-only", "from-event"),
    ],
)
def test_resolve_table(record: RawAccess, key_id: str, account: str) -> None:
    resolver = KeyResolver(STORE.get, IDS.get)
    event = resolver.resolve(record)
    assert (event.key_id, event.account_id) == (key_id, account)


def test_unknown_hash_is_rejected() -> None:
    with pytest.raises(InputError) as info:
        KeyResolver(STORE.get).resolve(raw(key_hash=H2))
    assert info.value.reason == "unknown_key"
    assert H2 not in str(info.value)


def test_caching_positive_and_negative_with_ttls() -> None:
    clock = Clock()
    calls, lookup = counting(STORE)
    resolver = KeyResolver(lookup, ttl=60, negative_ttl=5, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        assert resolver.lookup_hash(H1) == STORE[H1]
        assert resolver.lookup_hash(H2) is None
    assert calls == [H1, H2]
    clock.now = 6  # the miss expired, the hit did not
    resolver.lookup_hash(H1)
    resolver.lookup_hash(H2)
    assert calls == [H1, H2, H2]
    clock.now = 61
    resolver.lookup_hash(H1)
    assert calls == [H1, H2, H2, H1]


def test_lru_bound() -> None:
    calls, lookup = counting(STORE)
    resolver = KeyResolver(lookup, max_size=2)  # type: ignore[arg-type]
    for h in ("1" * 64, "2" * 64, "1" * 64, "3" * 64, "2" * 64):
        resolver.lookup_hash(h)
    assert len(resolver.hashes) == 2
    assert calls == ["1" * 64, "2" * 64, "3" * 64, "2" * 64]  # "2" was least recently used

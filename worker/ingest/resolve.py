"""Key identity resolution: key hash -> key id, account and environment, cached.

The key store lives elsewhere; the caller passes lookup callables (sync or async). Hits are cached
in an LRU for ``ttl`` seconds; misses are cached for ``negative_ttl`` seconds so that a flood of
unknown hashes (key enumeration) cannot hammer the store (seed design: "cache negative result
briefly to prevent enumeration attacks"; it uses 60 s in Redis and a 1-minute local LRU).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from core.errors import InputError
from detectors.model import AccessEvent
from worker.ingest.model import RawAccess
from worker.ingest.precedence import decide, must_link

DEFAULT_TTL: Final = 60.0
DEFAULT_NEGATIVE_TTL: Final = 10.0  # short: a key issued a moment ago must start resolving soon
DEFAULT_MAX_SIZE: Final = 100_000


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the key store says about one key."""

    key_id: str
    account_id: str | None = None
    environment: str = "live"
    status: str = "active"


Lookup = Callable[[str], KeyInfo | None]
_MISS: Final = object()


class TTLCache:
    """A small LRU with per-entry expiry; ``None`` values are cached misses."""

    def __init__(self, max_size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_size = max_size
        self.clock = clock
        self._data: OrderedDict[str, tuple[float, KeyInfo | None]] = OrderedDict()

    def get(self, key: str) -> KeyInfo | object | None:
        """The cached value, or ``_MISS`` when absent or expired."""
        entry = self._data.get(key)
        if entry is None:
            return _MISS
        if entry[0] <= self.clock():
            del self._data[key]
            return _MISS
        self._data.move_to_end(key)
        return entry[1]

    def put(self, key: str, value: KeyInfo | None, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds, evicting the least recently used entry."""
        self._data[key] = (self.clock() + ttl, value)
        self._data.move_to_end(key)
        if len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class _Base:
    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        max_size: int = DEFAULT_MAX_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.hashes = TTLCache(max_size, clock)
        self.ids = TTLCache(max_size, clock)

    def _remember(self, cache: TTLCache, key: str, info: KeyInfo | None) -> KeyInfo | None:
        cache.put(key, info, self.ttl if info is not None else self.negative_ttl)
        return info

    @staticmethod
    def _event(
        raw: RawAccess, by_hash: KeyInfo | None, by_id: KeyInfo | None, links: bool = True
    ) -> AccessEvent:
        """The gateway's authenticated id wins (worker.ingest.precedence); unknown ids are kept."""
        who = decide(raw, by_hash, by_id, links=links)
        if isinstance(who, str):
            raise InputError(who, reason="unknown_key")
        return raw.to_event(*who)


class KeyResolver(_Base):
    """Resolve a record's key with synchronous lookups (``by_id`` is optional)."""

    def __init__(
        self,
        by_hash: Lookup,
        by_id: Lookup | None = None,
        *,
        ttl: float = DEFAULT_TTL,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        max_size: int = DEFAULT_MAX_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ttl, negative_ttl, max_size, clock)
        self._by_hash = by_hash
        self._by_id = by_id

    def lookup_hash(self, key_hash: str) -> KeyInfo | None:
        """KeyInfo for a key hash, None when the store does not know it (cached both ways)."""
        hit = self.hashes.get(key_hash)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        return self._remember(self.hashes, key_hash, self._by_hash(key_hash))

    def lookup_id(self, key_id: str) -> KeyInfo | None:
        """KeyInfo for a key id, None when unknown or when no id lookup was given."""
        if self._by_id is None:
            return None
        hit = self.ids.get(key_id)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        return self._remember(self.ids, key_id, self._by_id(key_id))

    def resolve(self, raw: RawAccess) -> AccessEvent:
        """The detector event for ``raw``; raises ``InputError(reason="unknown_key")``."""
        by_hash = self.lookup_hash(raw.key_hash) if raw.key_hash else None
        by_id = self.lookup_id(raw.key_id) if raw.key_id else None
        if by_id is None and raw.consumer_id and must_link(raw):
            by_id = self.lookup_id(raw.consumer_id)
        return self._event(raw, by_hash, by_id, self._by_id is not None)

"""The in-process LRU of key metadata by hash: short positive TTL, negative caching, and
stale entries kept for when Redis and SQL are both unreachable."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from worker.keystore.ratelimits import RateLimit, parse_limits
from worker.keystore.store import KeyRecord


def _epoch(value: str | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


@dataclass(frozen=True, slots=True)
class KeyMeta:
    """What a gateway needs of a key (the Redis view's ``apikey:{hash}`` JSON)."""

    key_id: str
    account_id: str
    status: str
    expires_at: float | None = None  # epoch seconds
    rate_limits: tuple[RateLimit, ...] = ()
    throttled_until: float | None = None

    @classmethod
    def of_record(cls, rec: KeyRecord) -> KeyMeta:
        """From the SQL key store."""
        return cls(
            rec.key_id, rec.account_id, rec.status, _epoch(rec.expires_at),
            parse_limits(rec.rate_limits), _epoch(rec.throttled_until),
        )  # fmt: skip

    @classmethod
    def of_view(cls, view: dict[str, Any]) -> KeyMeta:
        """From the Redis view's JSON."""
        return cls(
            str(view["key_id"]), str(view.get("account_id") or ""), str(view["status"]),
            _epoch(view.get("expires_at")), parse_limits(view.get("rate_limits") or ()),
            _epoch(view.get("throttled_until")),
        )  # fmt: skip

    def status_at(self, now: float) -> str:
        """Effective status: active/deprecated past ``expires_at`` is expired."""
        if self.status in ("active", "deprecated") and self.expires_at and self.expires_at <= now:
            return "expired"
        return self.status


@dataclass(slots=True)
class Entry:
    """A cached answer: ``meta`` None means "no such key" (negative entry)."""

    meta: KeyMeta | None
    fresh_until: float  # time.monotonic()

    def fresh(self, now: float) -> bool:
        """Whether the entry may be used without asking Redis/SQL again."""
        return now < self.fresh_until


class KeyCache:
    """Hash -> Entry, least recently used evicted first; an index by key id for evictions."""

    def __init__(self, size: int, positive_ttl_s: float, negative_ttl_s: float) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._by_id: dict[str, str] = {}
        self._size = size
        self._pos, self._neg = positive_ttl_s, negative_ttl_s

    def get(self, key_hash: str) -> Entry | None:
        """The entry, fresh or stale, or None."""
        entry = self._entries.get(key_hash)
        if entry is not None:
            self._entries.move_to_end(key_hash)
        return entry

    def put(self, key_hash: str, meta: KeyMeta | None) -> None:
        """Remember an answer for its TTL."""
        ttl = self._pos if meta is not None else self._neg
        self._entries[key_hash] = Entry(meta, time.monotonic() + ttl)
        self._entries.move_to_end(key_hash)
        if meta is not None:
            self._by_id[meta.key_id] = key_hash
        while len(self._entries) > self._size:
            _old_hash, old = self._entries.popitem(last=False)
            if old.meta is not None:
                self._by_id.pop(old.meta.key_id, None)

    def expire(self, key_hash: str | None = None, key_id: str | None = None) -> None:
        """Make an entry stale at once (kept as a last resort during outages)."""
        key_hash = key_hash or (self._by_id.get(key_id) if key_id else None)
        if key_hash and key_hash in self._entries:
            self._entries[key_hash].fresh_until = 0.0

    def hash_of(self, key_id: str) -> str | None:
        """The hash of a cached key id."""
        return self._by_id.get(key_id)

    def expire_all(self) -> None:
        """Everything stale: after a gap in the change feed, nothing cached is trusted."""
        for entry in self._entries.values():
            entry.fresh_until = 0.0

    def __len__(self) -> int:
        return len(self._entries)

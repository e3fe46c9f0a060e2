"""Re-keying: events into per-partition buffers, and batches back into per-key groups.

Faust writes a table entry's changelog to a partition chosen for that entry; keywatch makes it the
key's own partition (``partition_for``), and sends each re-keyed batch to that same partition, so
every event of a key meets its profile on one worker and in one changelog partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

from detectors.model import AccessEvent
from worker.partitioning import partition_for

T = TypeVar("T")
Batch = tuple[int, list[T]]


class PartitionBuffers(Generic[T]):
    """Items (events, or encoded event rows) buffered per target partition of their key id;
    a buffer leaves as one batch when it is full."""

    def __init__(self, partitions: int, max_events: int) -> None:
        if partitions <= 0 or max_events <= 0:
            raise ValueError("partitions and max_events must be positive")
        self.partitions = partitions
        self.max_events = max_events
        self._buffers: dict[int, list[T]] = {}
        self._size = 0

    def add(self, key_id: str, item: T) -> Batch[T] | None:
        """Buffer ``item`` of ``key_id``; returns the batch of its partition when it just filled."""
        p = partition_for(key_id, self.partitions)
        buf = self._buffers.get(p)
        if buf is None:
            buf = self._buffers[p] = []
        buf.append(item)
        self._size += 1
        if len(buf) >= self.max_events:
            del self._buffers[p]
            self._size -= len(buf)
            return p, buf
        return None

    def add_all(self, items: Iterable[tuple[str, T]]) -> list[Batch[T]]:
        """Buffer many ``(key_id, item)`` pairs; returns the batches that filled up meanwhile."""
        # ``add`` inlined: this runs once per event on the ingest path.
        full: list[Batch[T]] = []
        buffers, partitions, limit = self._buffers, self.partitions, self.max_events
        added = 0
        for key_id, item in items:
            p = partition_for(key_id, partitions)
            buf = buffers.get(p)
            if buf is None:
                buf = buffers[p] = []
            buf.append(item)
            added += 1
            if len(buf) >= limit:
                del buffers[p]
                added -= len(buf)
                full.append((p, buf))
        self._size += added
        return full

    def drain(self) -> list[Batch[T]]:
        """Every non-empty buffer as a batch (the flush at the end of an interval)."""
        out = sorted(self._buffers.items())
        self._buffers.clear()
        self._size = 0
        return out

    def __len__(self) -> int:
        return self._size


def group_by_key(events: Sequence[AccessEvent]) -> dict[str, list[AccessEvent]]:
    """Events per key id, in arrival order within each key."""
    groups: dict[str, list[AccessEvent]] = {}
    for event in events:
        bucket = groups.get(event.key_id)
        if bucket is None:
            groups[event.key_id] = [event]
        else:
            bucket.append(event)
    return groups

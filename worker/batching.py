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
Runs = tuple[tuple[int, int], ...]  # (source, items) in item order: where a batch's items came from
Batch = tuple[int, list[T], Runs]
UNKNOWN_SOURCE = -1


class PartitionBuffers(Generic[T]):
    """Items (events, or encoded event rows) buffered per target partition of their key id;
    a buffer leaves as one batch when it is full, with the runs of sources its items came from
    (a source is a ``gateway.access`` partition; worker.reorder orders by them)."""

    def __init__(self, partitions: int, max_events: int) -> None:
        if partitions <= 0 or max_events <= 0:
            raise ValueError("partitions and max_events must be positive")
        self.partitions = partitions
        self.max_events = max_events
        self._buffers: dict[int, list[T]] = {}
        self._starts: dict[int, list[tuple[int, int]]] = {}  # partition -> (source, first index)
        self._size = 0

    def add(self, key_id: str, item: T, source: int = UNKNOWN_SOURCE) -> Batch[T] | None:
        """Buffer ``item`` of ``key_id``; returns the batch of its partition when it just filled."""
        full = self.add_all(((key_id, item),), source)
        return full[0] if full else None

    def add_all(
        self, items: Iterable[tuple[str, T]], source: int = UNKNOWN_SOURCE
    ) -> list[Batch[T]]:
        """Buffer many ``(key_id, item)`` pairs of ``source``; returns the batches that filled
        up meanwhile."""
        # Runs once per event on the ingest path: a source run is noted when a buffer is
        # created or first touched by this call, not per item.
        full: list[Batch[T]] = []
        buffers, starts, partitions, limit = (
            self._buffers,
            self._starts,
            self.partitions,
            self.max_events,
        )
        touched: set[int] = set()
        added = 0
        for key_id, item in items:
            p = partition_for(key_id, partitions)
            buf = buffers.get(p)
            if buf is None:
                buf = buffers[p] = []
                starts[p] = [(source, 0)]
                touched.add(p)
            elif p not in touched:
                touched.add(p)
                if starts[p][-1][0] != source:
                    starts[p].append((source, len(buf)))
            buf.append(item)
            added += 1
            if len(buf) >= limit:
                del buffers[p]
                added -= len(buf)
                full.append((p, buf, _runs(starts.pop(p), len(buf))))
                touched.discard(p)
        self._size += added
        return full

    def drain(self) -> list[Batch[T]]:
        """Every non-empty buffer as a batch (the flush at the end of an interval)."""
        starts = self._starts
        out = [(p, buf, _runs(starts[p], len(buf))) for p, buf in sorted(self._buffers.items())]
        self._buffers.clear()
        starts.clear()
        self._size = 0
        return out

    def __len__(self) -> int:
        return self._size


def _runs(starts: list[tuple[int, int]], n: int) -> Runs:
    """(source, first index) marks -> (source, count) runs of a batch of ``n`` items."""
    ends = [i for _, i in starts[1:]] + [n]
    return tuple((s, end - i) for (s, i), end in zip(starts, ends, strict=True))


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

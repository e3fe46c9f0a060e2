"""Re-keying buffers: every batch holds only keys of its own partition, and nothing is lost."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.model import AccessEvent
from worker.batching import PartitionBuffers, group_by_key
from worker.partitioning import partition_for


def ev(key_id: str, ts: float = 1.0) -> AccessEvent:
    return AccessEvent(ts=ts, key_id=key_id, ip="8.8.8.8")


@given(
    keys=st.lists(st.text(min_size=1, max_size=12), min_size=0, max_size=300),
    partitions=st.integers(1, 12),
    max_events=st.integers(1, 50),
)
def test_batches_are_single_partition_and_complete(
    keys: list[str], partitions: int, max_events: int
) -> None:
    buffers: PartitionBuffers[AccessEvent] = PartitionBuffers(partitions, max_events)
    batches = buffers.add_all((k, ev(k)) for k in keys) + buffers.drain()
    assert len(buffers) == 0
    assert sorted(e.key_id for _, b, _ in batches for e in b) == sorted(keys)
    for partition, batch, runs in batches:
        assert 0 < len(batch) <= max_events
        assert runs == ((-1, len(batch)),)
        assert {partition_for(e.key_id, partitions) for e in batch} == {partition}


def test_a_full_buffer_leaves_at_once() -> None:
    buffers: PartitionBuffers[str] = PartitionBuffers(4, 3)
    p = partition_for("k1", 4)
    assert buffers.add("k1", "a") is None
    assert buffers.add("k1", "b") is None
    assert buffers.add("k1", "c") == (p, ["a", "b", "c"], ((-1, 3),))
    assert len(buffers) == 0
    assert buffers.drain() == []


def test_drain_returns_every_partition_once_in_order() -> None:
    buffers: PartitionBuffers[str] = PartitionBuffers(8, 100)
    for i in range(40):
        buffers.add(f"key{i}", f"e{i}")
    drained = buffers.drain()
    assert [p for p, _, _ in drained] == sorted({partition_for(f"key{i}", 8) for i in range(40)})
    assert sum(len(b) for _, b, _ in drained) == 40


@pytest.mark.parametrize("partitions, max_events", [(0, 1), (1, 0), (-1, 5)])
def test_bad_sizes_are_refused(partitions: int, max_events: int) -> None:
    with pytest.raises(ValueError):
        PartitionBuffers(partitions, max_events)


def test_group_by_key_keeps_arrival_order_per_key() -> None:
    events = [ev("a", 3), ev("b", 1), ev("a", 1), ev("c", 2), ev("b", 5)]
    groups = group_by_key(events)
    assert list(groups) == ["a", "b", "c"]
    assert [e.ts for e in groups["a"]] == [3, 1]
    assert [e.ts for e in groups["b"]] == [1, 5]


@given(
    chunks=st.lists(
        st.tuples(st.integers(0, 3), st.lists(st.sampled_from(["a", "b", "c", "d", "e"]))),
        max_size=12,
    ),
    max_events=st.integers(1, 9),
)
def test_runs_say_which_source_each_item_came_from(
    chunks: list[tuple[int, list[str]]], max_events: int
) -> None:
    buffers: PartitionBuffers[tuple[int, str]] = PartitionBuffers(3, max_events)
    batches = []
    for source, keys in chunks:
        batches += buffers.add_all(((k, (source, k)) for k in keys), source)
    batches += buffers.drain()
    for _, batch, runs in batches:
        assert all(n > 0 for _, n in runs)
        assert [s for s, n in runs for _ in range(n)] == [s for s, _ in batch]

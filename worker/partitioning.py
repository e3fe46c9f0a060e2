"""The one partitioning function: key id -> partition, used by every producer and table.

It is Kafka's default partitioner (murmur2 of the key bytes, positive, modulo the partition
count), so a message keyed by key id lands on the same partition whether keywatch or any Kafka
client chooses it. Faust writes a table entry's changelog to the partition of the message being
processed, so a batch may only carry keys that all map to its partition by this function.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 18)
def _hash(key_id: str) -> int:
    return int(murmur2(key_id.encode())) & 0x7FFFFFFF


def partition_for(key_id: str, partitions: int) -> int:
    """The partition of ``key_id`` among ``partitions``."""
    return _hash(key_id) % partitions

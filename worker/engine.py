"""The one module that touches Faust and aiokafka internals (faust-streaming 0.15, aiokafka 0.14).

Agents use what this module offers and nothing private of the stream engine. Each internal
relied on is listed here and pinned by tests/unit/worker/test_engine.py, so an upgrade that
changes one fails there, loudly, instead of in production:

- ``bound_fetch_wait``: ``AIOKafkaConsumerThread._create_worker_consumer`` creates the aiokafka
  consumer, whose fetcher reads ``AIOKafkaConsumer._fetch_max_wait_ms`` when it starts.
- ``ChangelogTable``: ``Table.__setitem__`` calls ``Table.on_key_set``, which by default sends
  the changelog record; ``Table.data`` is the store's mapping; ``Producer.send`` takes
  ``(topic, key, value, partition, timestamp, headers)`` positionally.
- ``Checkpoint``: a ``Message`` is acknowledged (its offset committable) once its reference
  count, raised by ``Message.incref`` and lowered by ``Event.ack``, reaches zero.
- ``windows``: ``Stream.take_events`` (faust-streaming only) yields the events of a window.
- ``seal_before_recovery``: ``Recovery._build_highwaters(consumer, tps, destination, title)``
  is where recovery reads each changelog partition's end offset (and it stops there), with
  ``title="active"`` for the partitions this worker owns;
  ``credentials_to_aiokafka_auth`` turns Faust's broker credentials into aiokafka options.

How keywatch would move to another engine (README, "Stream engine") starts here: this module
is what would be rewritten; agents, stages and records would not change.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import faust
import structlog
from aiokafka.admin import AIOKafkaAdminClient
from faust.serializers.codecs import Codec
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

if TYPE_CHECKING:
    from faust.types import EventT, StreamT

log = structlog.get_logger("keywatch.engine")

# The key of the record that seals a changelog partition: a tombstone, so recovery applies it
# as "delete a key that does not exist" and a compacted topic drops it.
SEAL_KEY = b"\x00keywatch.seal"
TANSU_CLUSTER_PREFIX = "tansu"  # Tansu's cluster id is "tansu_cluster" unless configured
IDLE_CHECKPOINTS = 60  # a key unchanged for this many checkpoints is kept as bytes


class Encodable(Protocol):
    """A table value: a live object that serializes itself for the changelog."""

    def to_bytes(self) -> bytes: ...


# ---- consumers ---------------------------------------------------------------------------------


def bound_fetch_wait(wait_ms: int) -> None:
    """Faust hard-codes its consumers' fetch_max_wait_ms to 1500; apply ours before they start.

    aiokafka reads the attribute when the consumer starts its fetcher, so setting it on the
    freshly created consumer is enough.
    """
    thread_cls = faust_aiokafka.AIOKafkaConsumerThread
    original = getattr(thread_cls, "_keywatch_original_create", None)
    if original is None:
        original = thread_cls._create_worker_consumer
        thread_cls._keywatch_original_create = original  # type: ignore[attr-defined]

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = wait_ms
        return consumer

    thread_cls._create_worker_consumer = create  # type: ignore[method-assign]


async def windows(
    stream: StreamT[Any], max_events: int, within: float
) -> AsyncIterator[Sequence[EventT[Any]]]:
    """The stream's events, a window at a time: up to ``max_events`` or ``within`` seconds."""
    async for events in stream.take_events(max_events, within=within):  # type: ignore[attr-defined]
        yield events


# ---- the changelog-backed table --------------------------------------------------------------


class KeepBytesCodec(Codec):
    """Faust codec for a changelog of ``Encodable`` values: a value (object or bytes) <-> bytes.

    Loading keeps the bytes: recovery decodes nothing up front (a profile's ``from_bytes`` is
    ~200 µs); the owner decodes a key's value when it is next used.
    """

    def _dumps(self, obj: Any) -> bytes:
        data: bytes = obj if isinstance(obj, bytes) else obj.to_bytes()
        return data

    def _loads(self, s: bytes) -> Any:
        return bytes(s)


class ChangelogTable(faust.Table):  # type: ignore[type-arg]
    """Key -> live ``Encodable`` value, whose changelog is written once per key per checkpoint.

    Faust sends a changelog record on every assignment, through its producer buffer, one
    message at a time (the buffer overflowed at ~2k profiles/s in benchmarks/worker_bench.py),
    to the partition of the message being processed. Here an assignment only marks the key;
    ``flush_changelog`` sends each marked key's value once, straight to the producer, to
    ``partition_of(key, partitions)``: the partition the key's events are routed to, so both
    always agree and a window may mix messages of several partitions. Values of keys idle for
    ``IDLE_CHECKPOINTS`` go back to their bytes, so memory follows the active keys.
    """

    def __init__(
        self,
        app: faust.App,
        *,
        name: str,
        partitions: int,
        partition_of: Callable[[str, int], int],
        **kwargs: Any,
    ) -> None:
        super().__init__(app, name=name, partitions=partitions, key_type=str, **kwargs)
        self.n_partitions, self.partition_of = partitions, partition_of
        # Faust derives serializers from key/value types (json unless a Record); the changelog
        # topic is built lazily at start, after this.
        self.key_serializer, self.value_serializer = "raw", KeepBytesCodec()
        self.dirty: set[str] = set()
        self.checkpoints = 0
        self._changed_at: dict[str, int] = {}  # live key -> checkpoint number of its last change
        self._records: dict[str, bytes] = {}  # live key -> its last changelog record

    def partition_for_key(self, key: Any) -> int:
        """The changelog partition of ``key``: the key's own partition."""
        return self.partition_of(key, self.n_partitions)

    def on_key_set(self, key: Any, value: Any) -> None:
        """Mark the key; its changelog record leaves with the next flush."""
        self.dirty.add(key)

    async def flush_changelog(self) -> int:
        """Send every marked key's value to the changelog; returns the number sent."""
        dirty, self.dirty = self.dirty, set()
        self.checkpoints += 1
        send, n, partition_of = self.app.producer.send, self.n_partitions, self.partition_of
        topic = self.changelog_topic.get_topic_name()
        data, records, changed_at, now = (
            self.data,
            self._records,
            self._changed_at,
            self.checkpoints,
        )
        futures = []
        try:  # a send can fail at once (producer closed, buffer full) or later, on its future
            for key in dirty:
                value = data.get(key)
                if value is not None and value.__class__ is not bytes:
                    record = records[key] = value.to_bytes()
                    changed_at[key] = now
                    futures.append(
                        await send(topic, key.encode(), record, partition_of(key, n), None, None)
                    )
            await asyncio.gather(*futures)
        except BaseException:
            self.dirty |= dirty  # not known to be on the changelog: the next flush sends them
            raise
        if now % IDLE_CHECKPOINTS == 0:
            self._compact(now)
        return len(futures)

    def _compact(self, now: int) -> None:
        """Keys idle for IDLE_CHECKPOINTS go back to their bytes (~0.6 KB instead of ~8.5 KB
        as objects; benchmarks/state_bench.py): memory follows the active keys, not all keys."""
        data, records, changed_at = self.data, self._records, self._changed_at
        for key in [k for k, at in changed_at.items() if now - at >= IDLE_CHECKPOINTS]:
            del changed_at[key]
            record = records.pop(key)
            if key in data and key not in self.dirty:
                data[key] = record  # the store itself: no changelog record, it is there


class Checkpoint:
    """Holds processed events' acks until the values they changed are on the changelog.

    An event may be retained before it is processed (the profile stage holds events for
    event-time order, worker.reorder) and marked done later. A flush acknowledges, per
    partition, only the done events before the first one still open, in offset order: Faust
    commits a partition up to its lowest unacknowledged offset, but misses a gap of exactly
    one message at the head (``Consumer._new_offset`` compares ``min(acked) - committed`` with
    1), so an open message is never left behind an acknowledged later one.
    """

    def __init__(self, table: ChangelogTable) -> None:
        self.table = table
        self.held: list[EventT[Any]] = []  # done, waiting for the next flush
        self._open: dict[Any, deque[EventT[Any]]] = {}  # retained per partition, offset order
        self._done: set[int] = set()  # ids of retained events marked done
        self._lock = asyncio.Lock()

    def hold(self, events: Sequence[EventT[Any]]) -> None:
        """Keep ``events`` unacknowledged (their stream acks them once; we hold one more ref)."""
        for event in events:
            event.message.incref()
        self.held.extend(events)

    def retain(self, events: Sequence[EventT[Any]]) -> None:
        """Keep ``events`` unacknowledged until ``done`` and the flush after it."""
        opened = self._open
        for event in events:
            event.message.incref()
            tp = event.message.tp
            queue = opened.get(tp)
            if queue is None:
                queue = opened[tp] = deque()
            queue.append(event)

    def done(self, events: Iterable[EventT[Any]]) -> None:
        """Retained events now processed: acknowledged at the next flush, in offset order."""
        self._done.update(id(e) for e in events)

    @property
    def open(self) -> int:
        """Retained events not yet acknowledgeable."""
        return sum(len(q) for q in self._open.values())

    def _ready(self) -> list[EventT[Any]]:
        ready, finished = [], self._done
        for queue in self._open.values():
            while queue and id(queue[0]) in finished:
                event = queue.popleft()
                finished.discard(id(event))
                ready.append(event)
        return ready

    async def flush(self) -> int:
        """Write the changed values, then release the acks of the events behind them."""
        async with self._lock:
            held, self.held = self.held, []
            held += self._ready()
            try:
                sent = await self.table.flush_changelog()
            except BaseException:
                self.held[:0] = held  # acknowledged after a later flush that succeeds
                raise
            for event in held:
                event.ack()
            return sent


# ---- recovery on brokers that under-report end offsets (Tansu) --------------------------------


async def broker_cluster_id(app: faust.App) -> str | None:
    """The broker's cluster id (DescribeCluster), or None when it cannot be asked."""
    conf = app.conf
    auth = faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=[f"{u.host}:{u.port or 9092}" for u in conf.broker], **auth
    )
    try:
        await admin.start()
        described = await admin.describe_cluster()
        cluster_id: str | None = described.get("cluster_id")
        return cluster_id
    except Exception as exc:  # an unanswered question is "not Tansu": seal only when known
        log.warning("cluster_id_unknown", error=repr(exc))
        return None
    finally:
        await admin.close()


class ChangelogSealer:
    """Makes the broker's reported end of each changelog partition its real end.

    Tansu reports a partition's end offset as the last produce batch's base offset + 1, so
    after a batch of n records it is n - 1 short, and Faust's recovery, which stops at the
    reported end, leaves out the batch's other records (8 of 50 profiles came back in issue
    18). A record produced alone ends with a one-record batch, which Tansu reports right:
    before recovery reads the ends, each non-empty changelog partition it is about to read
    gets one tombstone. Cost: one produce per assigned non-empty partition per rebalance,
    plus a second ListOffsets (2-3 ms for 8 partitions in benchmarks/state_bench.py); nothing
    on the write path. The alternative, each changelog record in its own produce request,
    made a flush of 2,000 profiles take 390-600 ms instead of 22-41 ms (measured on Tansu).
    """

    def __init__(self, app: faust.App, mode: str) -> None:
        self.app, self.mode = app, mode
        self._needed: bool | None = {"on": True, "off": False}.get(mode)
        self.sealed = 0  # partitions sealed so far (for tests and logs)

    async def needed(self) -> bool:
        """Whether this broker needs sealing (asked once per process in "auto" mode)."""
        if self._needed is None:
            cluster_id = await broker_cluster_id(self.app)
            self._needed = bool(cluster_id and cluster_id.startswith(TANSU_CLUSTER_PREFIX))
            log.info("changelog_seal", cluster_id=cluster_id, sealing=self._needed)
        return self._needed

    async def seal(self, tps: Iterable[TP]) -> float:
        """Produce one tombstone alone to each partition; returns the seconds it took."""
        t0 = time.perf_counter()
        send = self.app.producer.send
        futures = [await send(tp.topic, SEAL_KEY, None, tp.partition, None, None) for tp in tps]
        await asyncio.gather(*futures)
        self.sealed += len(futures)
        return time.perf_counter() - t0


def seal_before_recovery(app: faust.App, mode: str) -> ChangelogSealer:
    """Wrap Faust's recovery so that it reads end offsets only after sealing (see above)."""
    sealer = ChangelogSealer(app, mode)
    recovery: Any = app.tables.recovery  # type: ignore[attr-defined]
    original = recovery._build_highwaters

    async def build_highwaters(
        consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await original(consumer, tps, destination, title)
        if title != "active":  # standbys keep reading past the end; their owner writes there
            return
        # destination holds end - 1: -1 for an empty partition, which needs no seal
        used = [tp for tp in tps if destination.get(tp, -1) >= 0]
        if not used or not await sealer.needed():
            return
        try:
            took = await sealer.seal(used)
        except Exception as exc:  # recover what the reported ends allow rather than not at all
            log.error("changelog_seal_failed", error=repr(exc))
            return
        await original(consumer, tps, destination, title)
        log.info("changelog_sealed", partitions=len(used), ms=round(took * 1e3))

    recovery._build_highwaters = build_highwaters
    return sealer

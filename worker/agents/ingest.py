"""Ingest: ``gateway.access`` (any format, one event or an array per message) -> re-keyed batches.

``IngestStage`` is the logic (parse, dead-letter rejects, resolve key hashes, re-key, send);
``IngestConsumer`` feeds it from Kafka. The consumer is a plain aiokafka group member inside the
worker process rather than a Faust stream: ingest keeps no state, and Faust's per-message path
costs ~225 µs (a plain agent tops out near 4,400 one-event messages/s on the reference machine),
while a poll of raw records costs a few µs each. At-least-once is kept the same way
``stream.take`` keeps it: offsets are committed only after every re-keyed batch carrying the
polled events (and every dead letter) has been acknowledged by the broker.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import (
    CorruptRecordException,
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
    RequestTimedOutError,
    UnsupportedCodecError,
)

from core.errors import KeyStoreUnavailable
from core.retry import RetryPolicy
from worker.authfail import network_row
from worker.batching import UNKNOWN_SOURCE, PartitionBuffers, Runs
from worker.eventcodec import Row, encode_rows, raw_row
from worker.ingest import ParseResult, RawAccess, Reject, ips, parse_message
from worker.ingest.precedence import decide, gateway_known, must_link, needs_identity
from worker.keycache import KeyCache
from worker.keystore.links import find_many_identities
from worker.metrics import Metrics
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.app import WorkerApp

log = structlog.get_logger("keywatch.ingest")

SendBatch = Callable[[int, bytes], Awaitable[None]]
DeadLetter = Callable[[str, str, Any, str], Awaitable[None]]
Parse = Callable[[bytes], ParseResult]
Resolve = Callable[[set[str]], Awaitable[dict[str, Any]]]
MAX_POLL_MESSAGES = 5000  # one poll never holds more than this many messages in memory
CHUNK_EVENTS = 4000  # parsed records alive at once (see IngestStage.handle)
STORE_WAIT = RetryPolicy(base_delay_s=0.5, max_delay_s=10.0)  # until the key store answers
RESTART_MIN_S, RESTART_MAX_S = 1.0, 30.0  # backoff of a consumer that keeps failing


class IngestStage:
    """One poll's messages -> parsed, resolved events in per-partition batches, sent."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        keys: KeyCache,
        send: SendBatch,
        dead_letter: DeadLetter,
        parse: Parse | None = None,
    ) -> None:
        self.partitions = settings.partitions
        self.max_events = settings.batch_max_events
        self.source = settings.topics.access
        self.metrics, self.keys = metrics, keys
        self.send, self.dead_letter = send, dead_letter
        self.parse: Parse = parse or functools.partial(
            parse_message, max_bytes=settings.max_message_bytes,
            max_events=settings.max_message_events,
        )  # fmt: skip
        self._counters: dict[str, Any] = {}
        self.store_retry = STORE_WAIT
        ips.configure(settings.trusted_proxies)
        self._extra_keys = metrics.extra_keys
        self._assigned: tuple[int, ...] = ()

    async def handle(
        self,
        values: Sequence[bytes],
        sources: Sequence[int] | None = None,
        assigned: Sequence[int] = (),
    ) -> int:
        """Process the messages; returns once every batch and dead letter is acknowledged.

        ``sources`` names each message's ``gateway.access`` partition and ``assigned`` all of
        this consumer's: each batch says which source its events came from, so the profile
        stage can put a key's events from several sources in event-time order (worker.reorder).

        Messages are parsed and resolved ``CHUNK_EVENTS`` at a time and each batch is encoded
        as soon as it fills, so few records are alive at once: a poll can carry ~140k events,
        and every young-generation GC pass walked lists of all of them (~1.7 µs per event in
        GC). The batches are the same as in one pass over the poll.
        """
        pending: list[Awaitable[None]] = []
        buffers: PartitionBuffers[Row] = PartitionBuffers(self.partitions, self.max_events)
        self._assigned = tuple(assigned)
        n = 0
        raws: list[RawAccess] = []
        nets: list[tuple[str, Row]] = []  # refused requests without a credential, per network
        source = UNKNOWN_SOURCE
        for i, value in enumerate(values):
            if sources is not None and sources[i] != source:
                if raws or nets:  # a chunk holds one source's events
                    n += await self._rekey(raws, nets, buffers, pending, source)
                    raws, nets = [], []
                source = sources[i]
            self._parse_one(value, raws, nets, pending)
            if len(raws) + len(nets) >= CHUNK_EVENTS:
                n += await self._rekey(raws, nets, buffers, pending, source)
                raws, nets = [], []
        if raws or nets:
            n += await self._rekey(raws, nets, buffers, pending, source)
        pending.extend(self._send(*batch) for batch in buffers.drain())
        await asyncio.gather(*pending)
        return n

    async def _rekey(
        self,
        raws: list[RawAccess],
        nets: list[tuple[str, Row]],
        buffers: PartitionBuffers[Row],
        pending: list[Awaitable[None]],
        source: int,
    ) -> int:
        """Resolve ``raws`` into ``buffers`` with ``nets``; batches that fill are encoded and
        queued to send."""
        rows = await self._resolve(raws, pending) if raws else []
        rows.extend(nets)
        pending.extend(self._send(*batch) for batch in buffers.add_all(rows, source))
        return len(rows)

    def _parse_one(
        self,
        value: bytes,
        raws: list[RawAccess],
        nets: list[tuple[str, Row]],
        pending: list[Awaitable[None]],
    ) -> None:
        try:
            result = self.parse(value)
        except Exception as exc:  # a parser bug must not stop the stream: keep the input
            log.exception("parse_failed")
            pending.append(self.dead_letter("internal_error", self.source, value, repr(exc)))
            return
        for reject in result.rejects:
            payload = _reject_payload(value, reject)
            detail = orjson.dumps(reject.to_dict()).decode()
            pending.append(self.dead_letter(reject.reason, self.source, payload, detail))
            if reject.record is not None:  # no credential: if refused, its network's evidence
                failed = network_row(reject.record)
                if failed is not None:
                    nets.append(failed)
        if result.events:
            self._count(result.fmt, len(result.events))
            raws.extend(result.events)

    def _count(self, fmt: str, n: int) -> None:
        counter = self._counters.get(fmt)
        if counter is None:
            counter = self._counters[fmt] = self.metrics.events.labels(format=fmt)
        counter.inc(n)

    async def _resolve(
        self, raws: list[RawAccess], pending: list[Awaitable[None]]
    ) -> list[tuple[str, Row]]:
        """Each record's identity: the gateway's authenticated key first (ingest.precedence)."""
        hashes = {r.key_hash for r in raws if r.key_hash}
        ids = {
            i
            for r in raws
            if r.key_id is not None and (r.key_hash is not None or _uuid_shaped(r))
            if needs_identity(r)  # the line above only skips the calls for most records
            for i in (r.key_id, r.consumer_id)
            if i
        }
        found = await self._lookup(self.keys.resolve_hashes, hashes) if hashes else {}
        known = await self._lookup(self.keys.identities, ids) if ids else {}
        rows: list[tuple[str, Row]] = []
        plain = not found and not known  # nothing resolved: a gateway's own id is the identity
        for raw in raws:
            key_id = raw.key_id
            if plain and key_id is not None and not must_link(raw):  # ``decide``'s answer
                if raw.extra_key_hash is not None:
                    self._extra_keys.inc()
                rows.append((key_id, raw_row(raw, key_id, raw.account_id)))
                continue
            by_hash = found.get(raw.key_hash) if raw.key_hash else None
            who = decide(raw, by_hash, gateway_known(raw, known))
            if isinstance(who, str):
                pending.append(self.dead_letter("unknown_key", self.source, asdict(raw), who))
                failed = network_row(raw)  # and, if refused, evidence for its network
                if failed is not None:
                    rows.append(failed)
                continue
            if raw.extra_key_hash is not None:
                self._extra_keys.inc()
            rows.append((who[0], raw_row(raw, *who)))
        return rows

    async def _lookup(self, resolve: Resolve, keys: set[str]) -> dict[str, Any]:
        """Resolve, waiting out a key-store outage (nothing is committed meanwhile)."""

        async def waiting(attempt: int, exc: BaseException) -> None:
            log.warning("key_store_unavailable", error=str(exc), attempt=attempt)

        found, _ = await self.store_retry.call(lambda: resolve(keys), KeyStoreUnavailable,
                                               on_retry=waiting)  # fmt: skip
        return found

    def _send(self, partition: int, rows: list[Row], runs: Runs) -> Awaitable[None]:
        """Encode now (the rows can go), send when awaited."""
        self.metrics.batch_events.observe(len(rows))
        return self.send(partition, encode_rows(rows, runs, self._assigned))


def _uuid_shaped(raw: RawAccess) -> bool:
    """Might ``must_link`` hold (a Kong id of a UUID's length)?"""
    return raw.fmt == "kong" and raw.key_id is not None and len(raw.key_id) == 36


def _reject_payload(value: bytes, reject: Reject) -> Any:
    """The rejected element of an array message (carried by the reject), else the message."""
    return value if reject.index is None else reject.item


class IngestConsumer:
    """Polls ``gateway.access`` as a consumer group and hands each poll to the stage."""

    def __init__(self, kapp: WorkerApp, stage: IngestStage) -> None:
        self.kapp, self.stage = kapp, stage
        s = kapp.settings
        self.group_id = f"{s.app_id}-ingest"
        self.poll_ms = max(1, int(s.flush_interval_s * 1000))
        self._messages = kapp.metrics.messages.labels(topic=s.topics.access)
        self._restarts = kapp.metrics.consumer_restarts.labels(consumer="ingest")

    def _consumer(self) -> AIOKafkaConsumer:
        s = self.kapp.settings
        session_ms = int(s.session_timeout_s * 1000)
        return AIOKafkaConsumer(
            s.topics.access,
            bootstrap_servers=s.broker_urls,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(500, session_ms // 10),
            rebalance_timeout_ms=session_ms,
            metadata_max_age_ms=3000,  # pick up a topic created after we subscribed
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
        )

    async def run(self) -> None:
        """Consume forever; a failed consumer is logged loudly and restarted with backoff."""
        delay = RESTART_MIN_S
        while True:
            started = time.monotonic()
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never a silent stop: restart, and say so every time
                self.kapp.consuming = False
                log.error("ingest_consumer_failed", error=repr(exc), restart_in=delay)
                self._restarts.inc()
                await asyncio.sleep(delay)
                ran_s = time.monotonic() - started
                delay = RESTART_MIN_S if ran_s > RESTART_MAX_S else min(delay * 2, RESTART_MAX_S)

    async def _consume(self) -> None:
        """Poll, process, commit until an error the consumer cannot get past by itself."""
        consumer = self._consumer()
        await consumer.start()
        try:
            while True:
                try:
                    polled = await consumer.getmany(
                        timeout_ms=self.poll_ms, max_records=MAX_POLL_MESSAGES
                    )
                except (KafkaConnectionError, NodeNotReadyError, RequestTimedOutError):
                    continue  # aiokafka reconnects by itself
                except Exception as exc:  # an undecodable batch: find it, dead-letter, move on
                    if not _record_error(exc):
                        raise
                    await self._isolate(consumer, exc)
                    continue
                if not polled:
                    continue
                await self._process(consumer, polled)
        finally:
            await consumer.stop()

    async def _process(self, consumer: AIOKafkaConsumer, polled: dict[Any, list[Any]]) -> None:
        """Hand one poll to the stage; commit, or rewind to the last commit on failure."""
        values = [r.value for records in polled.values() for r in records if r.value]
        sources = [tp.partition for tp, records in polled.items() for r in records if r.value]
        assigned = sorted(tp.partition for tp in consumer.assignment())
        self._messages.inc(len(values))
        try:
            await self.stage.handle(values, sources, assigned)
        except Exception as exc:  # broker send failed: replay from the last commit
            log.exception("ingest_batch_failed", error=repr(exc))
            await _rewind(consumer)
            await asyncio.sleep(1.0)
            return
        await _commit(consumer)

    async def _isolate(self, consumer: AIOKafkaConsumer, error: Exception) -> None:
        """Find the record a poll could not decode, dead-letter it and skip it.

        A failed poll may have advanced positions past records it never returned, so every
        partition goes back to its last commit and is re-read one record at a time (aiokafka
        keeps the position at the record that fails). A failure no partition reproduces is not
        about a record: it is raised, and ``run`` restarts the consumer.
        """
        log.error("ingest_poll_failed", error=repr(error))
        await _rewind(consumer)
        found = False
        for tp in sorted(consumer.assignment()):
            records: list[Any] = []
            while len(records) < MAX_POLL_MESSAGES:
                try:
                    got = await consumer.getmany(tp, timeout_ms=self.poll_ms, max_records=1)
                except Exception as exc:
                    if not _record_error(exc):
                        raise  # not about this record: never dead-letter a good one for it
                    found = True
                    await self._skip(consumer, tp, exc)
                    continue
                if not got:
                    break
                records.extend(got[tp])
            if records:
                await self._process(consumer, {tp: records})
        if not found:
            raise error

    async def _skip(self, consumer: AIOKafkaConsumer, tp: Any, exc: Exception) -> None:
        """Dead-letter the undecodable record at ``tp``'s position and seek past it."""
        offset = await consumer.position(tp)
        where = {"topic": tp.topic, "partition": tp.partition, "offset": offset}
        log.error("ingest_record_undecodable", error=repr(exc), **where)
        await self.kapp.dead_letter("undecodable_record", tp.topic, where, repr(exc))
        consumer.seek(tp, offset + 1)


def _record_error(exc: Exception) -> bool:
    """True for errors decoding fetched records (a codec, a CRC, a decompressor's own error);
    aiokafka's other errors are about the connection or the group, not one record."""
    if isinstance(exc, UnsupportedCodecError | CorruptRecordException):
        return True
    return not isinstance(exc, KafkaError)  # cramjam, struct, zlib... raised while decoding


async def _commit(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.commit()
    except KafkaError as exc:  # a rebalance took the partitions: their new owner replays
        log.warning("ingest_commit_failed", error=str(exc))


async def _rewind(consumer: AIOKafkaConsumer) -> None:
    for tp in consumer.assignment():
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


def register(kapp: WorkerApp) -> None:
    """Wire the ingest consumer into the worker app."""

    async def send(partition: int, value: bytes) -> None:
        await kapp.produce(kapp.events_topic, value, None, partition)

    kapp.keycache.use_identities(functools.partial(find_many_identities, kapp.store))
    stage = IngestStage(kapp.settings, kapp.metrics, kapp.keycache, send, kapp.dead_letter)
    consumer = IngestConsumer(kapp, stage)
    kapp.ingest = consumer
    kapp.app.task(consumer.run)

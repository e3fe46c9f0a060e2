"""Profiles: re-keyed batches -> per-key profile (Faust table) -> detectors -> ``keywatch.alerts``.

Per take window (a few messages, all keys of one partition per message) the stage groups events by
key, reads each key's profile from the table once, runs ``Analyzer.analyze`` over the key's events
and writes the profile back once: one changelog record per key per window, not per event.

The table holds live ``KeyProfile`` objects; only the changelog is serialized (``ProfileCodec``,
``KeyProfile.to_bytes``). Keeping bytes in the table instead would cost a ``from_bytes`` per key
per window on top (measured in benchmarks/state_bench.py). The table uses Kafka's partitioner for
its changelog (``ProfileTable``): a key's changelog partition is ``partition_for(key_id)``, the
partition its events arrive on, so a window may mix messages of several partitions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import faust
import orjson
import structlog
from faust.serializers.codecs import Codec

from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, Alert, KeyContext
from detectors.profile import KeyProfile
from worker.batching import group_by_key
from worker.errors import InputError
from worker.eventcodec import decode_batch
from worker.keycache import KeyCache
from worker.metrics import Metrics
from worker.partitioning import partition_for

if TYPE_CHECKING:
    from faust.types import StreamT

    from worker.app import WorkerApp

log = structlog.get_logger("keywatch.profiles")

SendAlert = Callable[[str, bytes], Awaitable[None]]
DeadLetter = Callable[[str, str, Any, str], Awaitable[None]]
TAKE_MESSAGES = 64  # messages per window; each carries up to batch_max_events events


class ProfileCodec(Codec):
    """Faust codec for the profiles changelog: ``KeyProfile`` <-> its compact bytes."""

    def _dumps(self, obj: Any) -> bytes:
        data: bytes = obj.to_bytes()
        return data

    def _loads(self, s: bytes) -> Any:
        return KeyProfile.from_bytes(s)


class ProfileTable(faust.Table):  # type: ignore[misc]
    """Key id -> live ``KeyProfile``; each key's changelog goes to ``partition_for(key id)``.

    Faust's default is the partition of the message being processed, which would tie a window to
    one source partition; its ``use_partitioner`` option needs producer metadata for the
    changelog topic that it does not fetch first. Choosing the partition here is the same
    function the ingest stage used to route the key's events, so both always agree.
    """

    def __init__(self, app: faust.App, *, name: str, partitions: int, **kwargs: Any) -> None:
        super().__init__(app, name=name, partitions=partitions, key_type=str, **kwargs)
        # Faust derives serializers from key/value types (json unless a Record); the changelog
        # topic is built lazily at start, after this.
        self.key_serializer, self.value_serializer = "raw", ProfileCodec()

    def partition_for_key(self, key: Any) -> int:
        """The changelog partition of ``key``: the key's own partition."""
        return partition_for(key, self.partitions)


class ProfileStage:
    """One window of re-keyed batches -> profiles updated once per key, alerts sent."""

    def __init__(
        self,
        table: MutableMapping[str, KeyProfile],
        analyzer: Analyzer,
        keys: KeyCache,
        send_alert: SendAlert,
        metrics: Metrics,
        dead_letter: DeadLetter,
        source: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.table, self.analyzer, self.keys = table, analyzer, keys
        self.send_alert, self.metrics, self.dead_letter = send_alert, metrics, dead_letter
        self.source, self.clock = source, clock

    async def handle(self, values: Sequence[bytes]) -> list[Alert]:
        """Analyze every key in the window; returns once its alerts are acknowledged."""
        events: list[AccessEvent] = []
        for value in values:
            try:
                batch = decode_batch(value)
            except InputError as exc:
                await self.dead_letter(exc.reason, self.source, value, str(exc))
                continue
            events.extend(batch)
        groups = group_by_key(events)
        contexts = await self.keys.contexts(groups) if groups else {}
        alerts, failed = self._analyze(groups, contexts)
        await asyncio.gather(
            *(self._publish(a) for a in alerts),
            *(self._failed(key_id, len(groups[key_id]), exc) for key_id, exc in failed),
        )
        self.metrics.analyzed.inc(len(events))
        self.metrics.profiles.set(len(self.table))
        return alerts

    def _analyze(
        self, groups: dict[str, list[AccessEvent]], contexts: dict[str, KeyContext | None]
    ) -> tuple[list[Alert], list[tuple[str, Exception]]]:
        now, table, analyze = self.clock(), self.table, self.analyzer.analyze
        alerts: list[Alert] = []
        failed: list[tuple[str, Exception]] = []
        for key_id, evs in groups.items():
            ctx = contexts.get(key_id) or KeyContext(key_id, evs[0].account_id)
            try:
                profile, found = analyze(ctx, table.get(key_id), evs, now)
            except Exception as exc:  # one key's bad state must not stop the others
                failed.append((key_id, exc))
                continue
            table[key_id] = profile  # the one write (and changelog record) of this key
            if found:
                alerts.extend(found)
        return alerts, failed

    async def _failed(self, key_id: str, events: int, exc: Exception) -> None:
        log.error("analysis_failed", key_id=key_id, error=repr(exc))
        payload = {"key_id": key_id, "events": events}
        await self.dead_letter("analysis_failed", self.source, payload, repr(exc))

    async def _publish(self, alert: Alert) -> None:
        severity = alert.severity
        for kind in {s.type for s in alert.signals}:
            self.metrics.alerts.labels(type=kind, severity=severity).inc()
        self.metrics.detect_latency.observe(max(0.0, alert.detected_at - alert.ts))
        await self.send_alert(alert.key_id or "", orjson.dumps(alert.to_dict()))


def geo_resolver(kapp: WorkerApp) -> Any:
    """The GeoIP resolver from settings (None city db: the maxminddb-geolite2 database)."""
    from geoip.resolver import GeoResolver

    return GeoResolver(kapp.settings.geoip_city_db, kapp.settings.geoip_asn_db)


def register(kapp: WorkerApp) -> None:
    """Wire the profile agent into the worker app."""

    async def send_alert(key_id: str, value: bytes) -> None:
        fut = await kapp.alerts_topic.send(key=key_id.encode(), value=value)
        await fut

    stage = ProfileStage(
        kapp.profiles, Analyzer(geo_resolver(kapp)), kapp.keycache, send_alert,
        kapp.metrics, kapp.dead_letter, kapp.settings.topics.events_by_key,
    )  # fmt: skip
    kapp.profile_stage = stage
    within = kapp.settings.flush_interval_s

    @kapp.app.agent(kapp.events_topic, name="keywatch.profiles")
    async def profiles(stream: StreamT[bytes]) -> None:
        async for values in stream.take(TAKE_MESSAGES, within=within):
            try:
                await stage.handle(values)
            except Exception as exc:  # never kill the agent; the batch's offsets still commit
                log.exception("profile_batch_failed", messages=len(values), error=repr(exc))

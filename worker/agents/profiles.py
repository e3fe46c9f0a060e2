"""Profiles: re-keyed batches -> per-key profile (Faust table) -> detectors -> ``keywatch.alerts``.

Per window (``worker.engine.windows``: a few messages, or ``flush_interval_s``) the stage puts
the events through ``worker.reorder`` (held while another source of their partition is behind
in event time), groups the events now due by key, reads each key's profile from the table
once, runs ``Analyzer.analyze`` over them, writes the profile back once and sends the alerts.
A timer (``REORDER_TICK_S``) releases events that came due without a new window. Profiles
reach the changelog at checkpoints (every ``CHECKPOINT_S``): each changed key once, whatever
the number of windows that touched it.
A message is acknowledged only at the checkpoint after all its events were analysed, once the
profiles they changed are on the changelog (``Checkpoint``), so a crash replays events, held
ones included, never loses them.

The table holds live ``KeyProfile`` objects; only the changelog is serialized. The table, the
checkpoint and the window are the engine's (worker.engine): this module uses no Faust internals.
Measured (benchmarks/state_bench.py): ``to_bytes`` ~50 µs and ``from_bytes`` ~200 µs per profile,
so a table of bytes would add ~250 µs per key per window; objects cost ~50 µs per key per
checkpoint. A key's changelog partition is ``partition_for(key_id)``, the partition its events
arrive on (``worker.engine.ChangelogTable``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from core.errors import InputError
from core.retry import RetryPolicy
from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, Alert, KeyContext
from detectors.policy_file import load_policy
from detectors.profile import KeyProfile
from worker.authfail import analyze_networks, take_networks
from worker.batching import group_by_key
from worker.engine import Checkpoint, windows
from worker.eventcodec import decode_batch, decode_sourced
from worker.keycache import KeyCache
from worker.metrics import Metrics
from worker.reorder import UNKNOWN_SOURCE, Reorder, ReorderBounds

if TYPE_CHECKING:
    from faust.types import StreamT

    from worker.app import WorkerApp

log = structlog.get_logger("keywatch.profiles")

SendAlert = Callable[[str, bytes], Awaitable[None]]
Incoming = tuple[int, bytes, Any]  # partition, value, token
DeadLetter = Callable[[str, str, Any, str], Awaitable[None]]
TAKE_MESSAGES = 64  # messages per window; each carries up to batch_max_events events
# How often changed profiles go to the changelog: once per key per second caps serialization at
# 2,000 keys x ~50 µs = 0.1 s per second for the benchmark's key count, whatever the event rate.
CHECKPOINT_S = 1.0
# Alerts the broker refused are retried until it takes them (the window waits for them).
PUBLISH_RETRY = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0)
RUN_CHUNK = 256  # events analysed before the alerts found so far are sent
OVERDUE_LOG_S = 10.0  # at most one reorder_overdue error this often
REORDER_TICK_S = 0.05  # how soon held events go once their partition's watermark passes them


def live_profile(stored: KeyProfile | bytes | None) -> KeyProfile | None:
    """The table's value as a ``KeyProfile`` (idle keys are kept as their compact bytes)."""
    if stored is None or isinstance(stored, KeyProfile):
        return stored
    return KeyProfile.from_bytes(stored)


class ProfileStage:
    """One window of re-keyed batches -> profiles updated once per key, alerts sent."""

    def __init__(
        self,
        table: MutableMapping[str, KeyProfile | bytes],
        analyzer: Analyzer,
        keys: KeyCache,
        send_alert: SendAlert,
        metrics: Metrics,
        dead_letter: DeadLetter,
        source: str,
        clock: Callable[[], float] = time.time,
        reorder: Reorder | None = None,
        on_done: Callable[[list[Any]], None] = lambda _tokens: None,
    ) -> None:
        self.table, self.analyzer, self.keys = table, analyzer, keys
        self.send_alert, self.metrics, self.dead_letter = send_alert, metrics, dead_letter
        self.source, self.clock = source, clock
        self.reorder = reorder or Reorder(ReorderBounds())
        self.on_done = on_done
        # one analysis at a time: a tick or a drain must not overtake a window's older events
        self._lock = asyncio.Lock()
        self._warned_at = float("-inf")

    async def handle(self, values: Sequence[bytes]) -> list[Alert]:
        """Analyze every event of ``values`` now, in arrival order across messages."""
        events: list[AccessEvent] = []
        for value in values:
            events.extend(await self._decode(value))
        async with self._lock:
            return await self._run(events)

    async def handle_window(self, messages: Sequence[Incoming]) -> list[Alert]:
        """One window of source messages: hold them for event-time order (worker.reorder),
        analyze what is due; ``on_done`` gets the tokens of messages now fully analysed."""
        async with self._lock:
            reorder = self.reorder
            for partition, value, token in messages:
                try:
                    events, runs, announced = await self._decode_sourced(value)
                    reorder.add(partition, runs, events, token, announced)
                except Exception as exc:  # acknowledged with the window: no message stays open
                    log.exception("profile_message_failed", error=repr(exc))
                    self.on_done([token])
            return await self._release(reorder.release)

    async def tick(self) -> list[Alert]:
        """Analyze held events that came due without new messages (a source went quiet).

        Never waits behind a window still being analysed (the window releases what is due
        itself); it says so, loudly, when events wait past ``max_hold_s`` meanwhile: a send
        that never completes must not hold events back in silence."""
        if not self.reorder.held:
            return []
        alerts: list[Alert] = []
        if not self._lock.locked():
            async with self._lock:
                alerts = await self._release(self.reorder.release)
        self._warn_overdue()
        return alerts

    def _warn_overdue(self) -> None:
        now = time.monotonic()
        if now - self._warned_at < OVERDUE_LOG_S:
            return
        stuck = self.reorder.overdue()
        if stuck:
            self._warned_at = now
            log.error("reorder_overdue", partitions=stuck, analysing=self._lock.locked())

    async def drain(self) -> list[Alert]:
        """Analyze every held event now (before the partitions are handed over)."""
        async with self._lock:
            return await self._release(self.reorder.drain)

    async def _release(
        self, take: Callable[[], tuple[list[AccessEvent], list[object]]]
    ) -> list[Alert]:
        late = self.reorder.late
        events, done = take()
        try:
            return await self._run(events) if events else []
        finally:
            self.on_done(done)
            if self.reorder.late > late:
                self.metrics.reorder_late.inc(self.reorder.late - late)
            self.metrics.reorder_held.set(self.reorder.held)

    async def _decode_sourced(
        self, value: bytes
    ) -> tuple[list[AccessEvent], Sequence[tuple[int, int]], Sequence[int]]:
        """A batch's events, their source runs and its sender's sources (worker.reorder)."""
        try:
            events, runs, announced = decode_sourced(value)
        except InputError as exc:
            await self.dead_letter(exc.reason, self.source, value, str(exc))
            return [], (), ()
        return events, runs or ((UNKNOWN_SOURCE, len(events)),), announced

    async def _decode(self, value: bytes) -> list[AccessEvent]:
        try:
            return decode_batch(value)
        except InputError as exc:
            await self.dead_letter(exc.reason, self.source, value, str(exc))
            return []

    async def _run(self, events: list[AccessEvent]) -> list[Alert]:
        """Analyze ``events``, ``RUN_CHUNK`` at a time (whole keys): a chunk's alerts start
        out before the next chunk is analysed, so a release of many held events does not
        delay an alert behind all of them."""
        groups = group_by_key(events)
        nets = take_networks(groups)  # failed attempts per client network (worker.authfail)
        contexts = await self.keys.contexts(groups) if groups else {}
        alerts: list[Alert] = []
        failed: list[tuple[str, Exception]] = []
        sending: list[asyncio.Future[None]] = []
        for chunk in _chunks(groups, RUN_CHUNK):
            found, bad = self._analyze(chunk, contexts)
            failed += bad
            if found:
                alerts += found
                sending.append(asyncio.ensure_future(self._publish_all(found)))
            await asyncio.sleep(0)  # the sends (and other agents) run between chunks
        if nets:
            cfg = self.analyzer.config
            found = analyze_networks(self.table, nets, cfg, self.clock())
            alerts += found
            sending.append(asyncio.ensure_future(self._publish_all(found)))
        await asyncio.gather(
            *sending,
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
                profile, found = analyze(ctx, live_profile(table.get(key_id)), evs, now)
            except Exception as exc:  # one key's bad state must not stop the others
                failed.append((key_id, exc))
                continue
            table[key_id] = profile  # the one write of this key in this window
            if found:
                alerts.extend(found)
        return alerts, failed

    async def _failed(self, key_id: str, events: int, exc: Exception) -> None:
        log.error("analysis_failed", key_id=key_id, error=repr(exc))
        payload = {"key_id": key_id, "events": events}
        await self.dead_letter("analysis_failed", self.source, payload, repr(exc))

    async def _publish_all(self, alerts: list[Alert]) -> None:
        """Publish every alert, retrying the ones the broker refused: the profiles already
        count them as raised, so the window is not acknowledged until they are sent."""
        for alert in alerts:
            self._count(alert)
        pending = alerts

        async def publish_pending() -> None:
            nonlocal pending
            results = await asyncio.gather(*(self._publish(a) for a in pending),
                                           return_exceptions=True)  # fmt: skip
            failed = [(a, r) for a, r in zip(pending, results, strict=True)
                      if isinstance(r, Exception)]  # fmt: skip
            pending = [a for a, _ in failed]
            if failed:
                raise failed[0][1]

        async def retrying(attempt: int, exc: BaseException) -> None:
            log.warning("alert_publish_retry", alerts=len(pending), error=repr(exc),
                        attempt=attempt)  # fmt: skip

        if pending:
            await PUBLISH_RETRY.call(publish_pending, Exception, on_retry=retrying)

    def _count(self, alert: Alert) -> None:
        severity = alert.severity
        for kind in {s.type for s in alert.signals}:
            self.metrics.alerts.labels(type=kind, severity=severity).inc()
        self.metrics.detect_latency.observe(max(0.0, alert.detected_at - alert.ts))

    async def _publish(self, alert: Alert) -> None:
        await self.send_alert(alert.key_id or "", orjson.dumps(alert.to_dict()))


def _chunks(
    groups: dict[str, list[AccessEvent]], size: int
) -> Iterator[dict[str, list[AccessEvent]]]:
    """``groups`` in order, cut into dicts of whole keys of about ``size`` events."""
    chunk: dict[str, list[AccessEvent]] = {}
    n = 0
    for key_id, evs in groups.items():
        chunk[key_id] = evs
        n += len(evs)
        if n >= size:
            yield chunk
            chunk, n = {}, 0
    if chunk:
        yield chunk


def geo_resolver(kapp: WorkerApp) -> Any:
    """The GeoIP resolver from settings (None city db: the maxminddb-geolite2 database)."""
    from geoip.resolver import GeoResolver

    s = kapp.settings
    return GeoResolver(s.geoip_city_db, s.geoip_asn_db, classes=s.network_classes)


def register(kapp: WorkerApp) -> None:
    """Wire the profile agent and its checkpoint timer into the worker app."""
    s = kapp.settings

    async def send_alert(key_id: str, value: bytes) -> None:
        await kapp.produce(kapp.alerts_topic, value, key_id.encode())

    analyzer = Analyzer(geo_resolver(kapp), load_policy(s.policy_file, dry_run=s.dry_run))
    checkpoint = Checkpoint(kapp.profiles)
    bounds = ReorderBounds(s.reorder_lateness_s, s.reorder_idle_s, s.reorder_max_hold_s)
    stage = ProfileStage(
        kapp.profiles, analyzer, kapp.keycache, send_alert, kapp.metrics, kapp.dead_letter,
        s.topics.events_by_key, reorder=Reorder(bounds), on_done=checkpoint.done,
    )  # fmt: skip
    kapp.profile_stage = stage
    kapp.profile_checkpoint = checkpoint  # the feedback agent flushes taught profiles through it
    within = s.flush_interval_s

    @kapp.app.agent(kapp.events_topic, name="keywatch.profiles")
    async def profiles(stream: StreamT[bytes]) -> None:
        async for events in windows(stream, TAKE_MESSAGES, within):
            checkpoint.retain(events)  # acknowledged once analysed and on the changelog
            try:
                await stage.handle_window([(e.message.partition, e.value, e) for e in events])
            except Exception as exc:  # never kill the agent: log, and move on
                log.exception("profile_batch_failed", messages=len(events), error=repr(exc))
                checkpoint.done(events)  # as before: a failed window is not left open

    async def tick() -> None:
        try:
            await stage.tick()
        except Exception as exc:  # the timer must keep running
            log.exception("profile_tick_failed", error=repr(exc))

    kapp.app.timer(REORDER_TICK_S)(tick)

    async def flush() -> None:
        try:
            await checkpoint.flush()
        except Exception as exc:  # the broker refused or timed out: the next flush resends
            log.warning("checkpoint_flush_failed", error=repr(exc))

    kapp.app.timer(CHECKPOINT_S)(flush)

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await stage.drain()  # held events are analysed here, not replayed by the next owner
        await checkpoint.flush()  # before another worker takes these keys over

    kapp.app.on_partitions_revoked.connect(on_revoked)  # type: ignore[arg-type]

"""Event-time order for the profile stage: a partition's events wait until every source passed them.

A key's events reach its events-by-key partition from several sources: each ``gateway.access``
partition is one source (its ingest consumer re-keys it in order), and sources run at their own
pace (a slower gateway node, a backed-up queue, an ingest consumer catching up). The analyzer
wants each key's events in event time, as ``keywatch replay`` feeds them, so the stage keeps a
watermark per events-by-key partition, as Flink does per operator:

- each source's *newest* event time seen in the partition (not beyond the wall clock plus
  ``CLOCK_SKEW_S``, so one bad clock cannot open the gate);
- the partition's watermark: the oldest *newest* among its active sources, minus the allowed
  lateness. A source is active while it delivered to the partition within ``idle_s`` (a source
  announced by an ingest consumer but not heard from yet counts from its announcement), so a
  quiet source never holds events for longer than that;
- events at or below the watermark leave in ``order_key`` order (event time, then a tie-break on
  the event's own fields, the same one replay uses); none waits longer than ``max_hold_s``.

One source alone never holds anything: its newest is at least its own events' time. An event
older than one its partition already released (its source had gone idle, or ran out of its
own order by more than the lateness) is analysed at once, out of order, and counted in ``late``.

Every source message carries a token; ``release`` returns the tokens whose events have all left,
so the caller acknowledges a message only once all of it has been analysed.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from detectors.model import AccessEvent

UNKNOWN_SOURCE: Final = -1  # a batch without a source header (an older ingest, a test)
CLOCK_SKEW_S: Final = 1.0  # a source's newest event time counts at most this far past now


def order_key(ev: AccessEvent) -> tuple[float, str, str, str, str, int, str, str]:
    """Event time, then a deterministic tie-break on the event's fields (replay uses the same)."""
    return (ev.ts, ev.request_id, ev.ip, ev.path, ev.method, ev.status, ev.user_agent, ev.gateway)


@dataclass(frozen=True, slots=True)
class ReorderBounds:
    """How long the stage may hold events for order (``KEYWATCH_REORDER_*``)."""

    lateness_s: float = 0.0  # event time a source may run out of its own order
    idle_s: float = 2.0  # a source silent this long (wall clock) no longer holds its partition
    max_hold_s: float = 30.0  # no event waits longer than this (wall clock)


class _Pending:
    """A source message's events not analysed yet."""

    __slots__ = ("left", "token")

    def __init__(self, left: int, token: object) -> None:
        self.left, self.token = left, token


# one held event: its order key's fields (flat: one tuple per event), a sequence number (equal
# keys never compare the events), the event, its message's pending count, when it arrived
_Held = tuple[float, str, str, str, str, int, str, str, int, AccessEvent, _Pending, float]
_EV: Final = 9
_PENDING: Final = 10
_ARRIVED: Final = 11


class _Partition:
    """One events-by-key partition: its sources' progress and its held events."""

    __slots__ = ("held", "oldest", "released_to", "sorted", "sources")

    def __init__(self) -> None:
        self.sources: dict[int, list[float]] = {}  # source -> [newest event time, last heard]
        self.held: list[_Held] = []
        self.oldest = float("inf")  # at most the wall time the oldest held event arrived
        self.sorted = True  # held is in order (nothing added since the last sort)
        self.released_to = float("-inf")  # the watermark of the last release

    def watermark(self, now: float, bounds: ReorderBounds) -> float:
        idle_before = now - bounds.idle_s
        newest = [n for n, heard in self.sources.values() if heard >= idle_before]
        return min(newest) - bounds.lateness_s if newest else float("inf")


class Reorder:
    """Holds each events-by-key partition's events until its watermark passes them."""

    def __init__(self, bounds: ReorderBounds, clock: Callable[[], float] = time.time) -> None:
        self.bounds, self.clock = bounds, clock
        self._parts: dict[int, _Partition] = {}
        self.late = 0  # events that arrived behind their partition's last release
        self._done: list[object] = []
        self._seq = 0

    @property
    def held(self) -> int:
        """Events held now."""
        return sum(len(p.held) for p in self._parts.values())

    def add(
        self,
        partition: int,
        runs: Sequence[tuple[int, int]],
        events: Sequence[AccessEvent],
        token: object,
        announced: Iterable[int] = (),
    ) -> None:
        """One source message's events; ``runs`` says which source each row came from."""
        part = self._parts.get(partition)
        if part is None:
            part = self._parts[partition] = _Partition()
        now = self.clock()
        sources = part.sources
        for s in announced:  # a source first heard of holds the partition from now on
            if s not in sources:
                sources[s] = [float("-inf"), now]
        if not events:
            self._done.append(token)
            return
        if sum(n for _, n in runs) != len(events):
            runs = ((UNKNOWN_SOURCE, len(events)),)
        pending = _Pending(len(events), token)
        cap, i, seq = now + CLOCK_SKEW_S, 0, self._seq
        held, behind = part.held, part.released_to
        for source, n in runs:
            newest = float("-inf")
            for ev in events[i : i + n]:
                ts = ev.ts
                if ts > newest:
                    newest = ts
                if ts < behind:
                    self.late += 1
                held.append((ts, ev.request_id, ev.ip, ev.path, ev.method, ev.status,
                             ev.user_agent, ev.gateway, seq, ev, pending, now))  # fmt: skip
                seq += 1
            i += n
            state = sources.get(source)
            newest = min(newest, cap)
            if state is None:
                sources[source] = [newest, now]
            else:
                if newest > state[0]:
                    state[0] = newest
                state[1] = now
        self._seq = seq
        part.sorted = False
        if now < part.oldest:
            part.oldest = now

    def release(self) -> tuple[list[AccessEvent], list[object]]:
        """The events now due, in order per partition, and the tokens of finished messages."""
        now, bounds = self.clock(), self.bounds
        out: list[AccessEvent] = []
        for part in self._parts.values():
            if not part.held:
                continue
            # what is behind the last release cannot be put in order any more: it goes at once
            mark = max(part.watermark(now, bounds), part.released_to)
            cutoff = now - bounds.max_hold_s
            if part.oldest <= cutoff:  # some may have waited long enough: up to the newest such
                part.oldest = min(h[_ARRIVED] for h in part.held)
                if part.oldest <= cutoff:
                    mark = max(mark, max(h[0] for h in part.held if h[_ARRIVED] <= cutoff))
            self._take(part, mark, out)
        done, self._done = self._done, []
        return out, done

    def overdue(self, slack_s: float = 1.0) -> list[dict[str, object]]:
        """Partitions holding an event past ``max_hold_s + slack_s``: a watchdog's view."""
        now, bounds = self.clock(), self.bounds
        out: list[dict[str, object]] = []
        for number, part in self._parts.items():
            if not part.held:
                continue
            oldest = min(h[_ARRIVED] for h in part.held)
            if now - oldest > bounds.max_hold_s + slack_s:
                out.append({
                    "partition": number, "held": len(part.held), "waited_s": round(now - oldest, 1),
                    "watermark": part.watermark(now, bounds), "released_to": part.released_to,
                    "sources": {s: [v[0], round(now - v[1], 1)] for s, v in part.sources.items()},
                    "first_ts": min(h[0] for h in part.held),
                })  # fmt: skip
        return out

    def drain(self) -> tuple[list[AccessEvent], list[object]]:
        """Every held event, in order per partition (before a partition is handed over)."""
        out: list[AccessEvent] = []
        for part in self._parts.values():
            if part.held:
                self._take(part, float("inf"), out)
        self._parts.clear()  # the partitions may come back later, from another owner's point
        done, self._done = self._done, []
        return out, done

    def _take(self, part: _Partition, mark: float, out: list[AccessEvent]) -> None:
        held = part.held
        if not part.sorted:
            held.sort()
            part.sorted = True
        if held[0][0] > mark:
            return
        n = len(held) if held[-1][0] <= mark else bisect_right(held, mark, key=_ts)
        done = self._done
        for h in held[:n]:
            out.append(h[_EV])
            pending = h[_PENDING]
            pending.left -= 1
            if not pending.left:
                done.append(pending.token)
        last = held[n - 1][0]
        del held[:n]
        if not held:
            part.oldest = float("inf")
        if last > part.released_to:
            part.released_to = last


def _ts(held: _Held) -> float:
    return held[0]

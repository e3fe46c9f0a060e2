"""Event-time order across sources (worker.reorder): what is held, what leaves, and when."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from detectors.model import AccessEvent
from worker.reorder import (
    Reorder,
    ReorderBounds,
    order_key,
)

NOW = 1795000000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def ev(ts: float, key: str = "k1", rid: str = "") -> AccessEvent:
    return AccessEvent(NOW - 3600 + ts, key, "5.9.0.1", "GET", "/v1/x", 200, request_id=rid)


def times(events: list[AccessEvent]) -> list[float]:
    return [e.ts - NOW + 3600 for e in events]


def test_one_source_holds_nothing_and_ties_break_on_the_event() -> None:
    r = Reorder(ReorderBounds(), Clock())
    batch = [ev(5, rid="b"), ev(1), ev(5, rid="a")]
    r.add(0, ((7, 3),), batch, "m1")
    out, done = r.release()
    assert [(t, e.request_id) for t, e in zip(times(out), out, strict=True)] == [
        (1, ""), (5, "a"), (5, "b"),
    ]  # fmt: skip
    assert done == ["m1"] and r.held == 0 and r.late == 0


def test_a_source_ahead_waits_for_the_one_behind() -> None:
    r = Reorder(ReorderBounds(), Clock())
    r.add(0, ((1, 3),), [ev(10), ev(20), ev(30)], "a1")
    r.add(0, ((2, 1),), [ev(5)], "b1")
    out, done = r.release()
    assert times(out) == [5] and done == ["b1"]  # source 2 has only reached t=5
    r.add(0, ((2, 2),), [ev(15), ev(25)], "b2")
    out, done = r.release()
    assert times(out) == [10, 15, 20, 25] and done == ["b2"]  # a1 still has t=30 held
    r.add(0, ((2, 1),), [ev(40)], "b3")
    out, done = r.release()
    assert times(out) == [30] and done == ["a1"] and r.held == 1  # t=40 waits for source 1


def test_partitions_are_ordered_independently() -> None:
    r = Reorder(ReorderBounds(), Clock())
    r.add(0, ((1, 1),), [ev(10)], "p0")
    r.add(1, ((2, 1),), [ev(5)], "p1")
    out, done = r.release()
    assert sorted(times(out)) == [5, 10] and sorted(done) == ["p0", "p1"]


def test_a_silent_source_stops_holding_after_idle_s() -> None:
    clock = Clock()
    r = Reorder(ReorderBounds(idle_s=2.0), clock)
    r.add(0, ((1, 1), (2, 1)), [ev(1), ev(2)], "m1")
    r.add(0, ((1, 1),), [ev(50)], "m2")
    assert times(r.release()[0]) == [1, 2]
    clock.now += 1.9
    assert r.release() == ([], [])
    clock.now += 0.2  # source 2 silent for 2.1 s
    out, done = r.release()
    assert times(out) == [50] and done == ["m2"]


def test_an_announced_source_holds_until_it_speaks_or_idles() -> None:
    clock = Clock()
    r = Reorder(ReorderBounds(idle_s=2.0), clock)
    r.add(0, ((1, 1),), [ev(10)], "a1", announced=(1, 2, 3))
    assert r.release() == ([], [])  # sources 2 and 3 may still bring older events
    r.add(0, ((2, 2),), [ev(4), ev(11)], "b1", announced=(1, 2, 3))
    r.add(0, ((3, 1),), [ev(12)], "c1", announced=(1, 2, 3))
    out, _ = r.release()
    assert times(out) == [4, 10]
    clock.now += 2.5  # 2 and 3 quiet: they hold no more, and announcing them again does not
    r.add(0, ((1, 1),), [ev(20)], "a2", announced=(1, 2, 3))
    out, _ = r.release()
    assert times(out) == [11, 12, 20]


def test_no_event_waits_longer_than_max_hold() -> None:
    clock = Clock()
    r = Reorder(ReorderBounds(idle_s=100.0, max_hold_s=5.0), clock)
    r.add(0, ((1, 1),), [ev(0)], "a0")
    r.add(0, ((2, 1),), [ev(0)], "b0")
    r.release()
    r.add(0, ((1, 1),), [ev(30)], "a1")
    clock.now += 3
    r.add(0, ((1, 1),), [ev(40)], "a2")
    clock.now += 2.5  # a1 has waited 5.5 s; a2 only 2.5 s but is older than nothing held
    out, done = r.release()
    assert times(out) == [30] and done == ["a1"]
    clock.now += 3
    assert times(r.release()[0]) == [40]


def test_an_event_behind_the_last_release_goes_at_once_and_is_counted() -> None:
    clock = Clock()
    r = Reorder(ReorderBounds(idle_s=1.0), clock)
    r.add(0, ((1, 1),), [ev(100)], "a1")
    r.release()
    r.add(0, ((2, 1),), [ev(50)], "b1", announced=(3,))  # source 3 holds the partition now
    out, done = r.release()
    assert times(out) == [50] and done == ["b1"] and r.late == 1


def test_drain_lets_everything_go_in_order() -> None:
    r = Reorder(ReorderBounds(), Clock())
    r.add(0, ((1, 2),), [ev(30), ev(10)], "a1", announced=(1, 2))
    assert r.release() == ([], [])
    out, done = r.drain()
    assert times(out) == [10, 30] and done == ["a1"] and r.held == 0


def test_a_message_without_events_is_done_at_once() -> None:
    r = Reorder(ReorderBounds(), Clock())
    r.add(0, (), [], "empty")
    assert r.release() == ([], ["empty"])


def test_runs_that_do_not_match_the_events_count_as_one_unknown_source() -> None:
    r = Reorder(ReorderBounds(), Clock())
    r.add(0, ((1, 5),), [ev(3), ev(1)], "m")
    out, done = r.release()
    assert times(out) == [1, 3] and done == ["m"]


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[int, list[tuple[int, list[AccessEvent]]]]:
    """Per-source streams in event-time order (distinct times), cut into messages,
    interleaved at random."""
    n_sources = draw(st.integers(1, 4))
    streams = []
    for s in range(n_sources):
        # distinct times: events of equal time in different windows keep arrival order
        ts = [t * 10 + s for t in sorted(draw(st.sets(st.integers(0, 60), max_size=25)))]
        keys = draw(st.lists(st.sampled_from("abc"), min_size=len(ts), max_size=len(ts)))
        events = [ev(t, k, rid=f"{s}-{i}") for i, (t, k) in enumerate(zip(ts, keys, strict=True))]
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=5)))
        bounds = [0, *cuts, len(events)]
        streams.append([(s, events[a:b]) for a, b in itertools.pairwise(bounds) if b > a])
    merged: list[tuple[int, list[AccessEvent]]] = []
    while any(streams):
        live = [i for i, msgs in enumerate(streams) if msgs]
        merged.append(streams[draw(st.sampled_from(live))].pop(0))
    return n_sources, merged


@given(interleavings())
def test_sources_in_their_own_order_come_out_in_event_time_order(
    case: tuple[int, list[tuple[int, list[AccessEvent]]]],
) -> None:
    n_sources, messages = case
    r = Reorder(ReorderBounds(), Clock())
    out: list[AccessEvent] = []
    done: list[object] = []
    announced = tuple(range(n_sources))
    for i, (source, events) in enumerate(messages):
        r.add(0, ((source, len(events)),), events, i, announced)
        got, finished = r.release()
        out += got
        done += finished
    got, finished = r.drain()
    out += got
    done += finished
    everything = [e for _, events in messages for e in events]
    assert out == sorted(everything, key=order_key)
    assert sorted(done) == list(range(len(messages))) and r.late == 0  # type: ignore[type-var]

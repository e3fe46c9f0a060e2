"""``auth.enumeration``: many distinct unknown keys from one client network."""

from __future__ import annotations

import hashlib

import pytest

from detectors import auth_abuse
from detectors.auth_abuse import NetworkState, analyze, is_network, subject_of
from detectors.config import DetectorConfig
from detectors.model import AccessEvent

T = 1795000000.0
CFG = DetectorConfig()


def h(i: int) -> str:
    """The SHA-256 of a made-up key (the ingest stage hashes; no key travels)."""
    return hashlib.sha256(f"sk_live_guess{i}".encode()).hexdigest()


def tries(ips: list[str], keys: list[int], step: float = 1.0) -> list[AccessEvent]:
    return [AccessEvent(T + i * step, subject_of(ip), ip, "GET", "/v1/x", 401,
                        extra_key_hash=h(k), auth="invalid")
            for i, (ip, k) in enumerate(zip(ips, keys, strict=True))]  # fmt: skip


@pytest.mark.parametrize(
    "name, ips, keys, step, expected",
    [
        # enumeration: 10 distinct keys within 10 minutes from one /24 (several hosts)
        ("enumeration", [f"203.0.113.{i}" for i in range(10)], list(range(10)), 1.0,
         [("medium", 10)]),
        ("one short", ["203.0.113.7"] * 9, list(range(9)), 1.0, []),
        # a client retrying its one stale key (a rotation gone wrong) is not enumeration
        ("stale key retried", ["203.0.113.7"] * 200, [0] * 200, 1.0, []),
        # a slow trickle: 10 keys, one every 2 minutes, never 10 within the window
        ("slow trickle", ["203.0.113.7"] * 10, list(range(10)), 120.0, []),
        # re-alert only when the count doubles: 10 and 20, not 11..19 or 21..29
        ("doubling", ["203.0.113.7"] * 30, list(range(30)), 1.0, [("medium", 10), ("medium", 20)]),
        # no alert between doublings, even past the "high" count (50 < 2 x 40)
        ("between doublings", ["203.0.113.7"] * 60, list(range(60)), 1.0,
         [("medium", 10), ("medium", 20), ("medium", 40)]),
        ("ipv6 /48", [f"2001:db8:1:{i}::5" for i in range(10)], list(range(10)), 1.0,
         [("medium", 10)]),
    ],
)  # fmt: skip
def test_enumeration(
    name: str, ips: list[str], keys: list[int], step: float, expected: list[tuple[str, int]]
) -> None:
    events = tries(ips, keys, step)
    subjects = {e.key_id for e in events}
    assert len(subjects) == 1  # one /24 or /48
    (subject,) = subjects
    _, alerts = analyze(subject, None, events, CFG, events[-1].ts)
    got = [(a.severity, a.signals[0].evidence["distinct_keys"]) for a in alerts]
    assert got == expected, name
    for a in alerts:
        assert (a.kind, a.action, a.key_id) == ("auth_abuse", "notify", subject)
        ev = a.signals[0].evidence
        assert all(len(p) == 12 for p in ev["key_sha256_prefixes"])
        assert not any(h(k) in str(a.to_dict()) for k in keys)  # prefixes only


def test_high_at_fifty_distinct_keys() -> None:
    events = tries(["203.0.113.7"] * 100, list(range(100)), 1.0)
    _, alerts = analyze(events[0].key_id, None, events, CFG, T + 100)
    assert [a.severity for a in alerts] == ["medium", "medium", "medium", "high"]
    assert alerts[-1].signals[0].evidence["distinct_keys"] == 80


@pytest.mark.parametrize("size", [1, 3, 7, 25])
def test_any_batching_gives_the_same_alerts(size: int) -> None:
    """Live (any window size, state through the changelog) equals replay (one pass)."""
    events = tries([f"198.51.100.{i % 4}" for i in range(45)], [i // 2 for i in range(45)])
    subject = events[0].key_id
    _, whole = analyze(subject, None, events, CFG, T)
    state: NetworkState | None = None
    parts = []
    for i in range(0, len(events), size):
        state, found = analyze(subject, state, events[i : i + size], CFG, T)
        state = NetworkState.from_bytes(state.to_bytes())  # through the changelog
        parts.extend(found)
    assert [a.id for a in parts] == [a.id for a in whole] and whole


def test_a_quiet_window_starts_a_new_streak() -> None:
    first = tries(["203.0.113.7"] * 10, list(range(10)))
    later = [AccessEvent(e.ts + 3600, e.key_id, e.ip, extra_key_hash=h(100 + i), auth="invalid")
             for i, e in enumerate(first)]  # fmt: skip
    state, a1 = analyze(first[0].key_id, None, first, CFG, T)
    _, a2 = analyze(first[0].key_id, state, later, CFG, T + 3600)
    assert len(a1) == len(a2) == 1 and a1[0].id != a2[0].id


def test_state_is_bounded() -> None:
    events = tries(["203.0.113.7"] * 2000, list(range(2000)), 0.1)
    state, _ = analyze(events[0].key_id, None, events, CFG, T)
    assert len(state.tries) == auth_abuse.MAX_TRIES


@pytest.mark.parametrize(
    "subject, network",
    [("net:203.0.113.0/24", True), ("9f2a1c3e", False), ("", False), (None, False)],
)
def test_is_network(subject: str | None, network: bool) -> None:
    assert is_network(subject) is network

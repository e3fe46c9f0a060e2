"""``auth.enumeration`` and ``auth.burst``: refused requests no key can hold, per network."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from detectors import auth_abuse
from detectors.auth_abuse import NetworkState, analyze, is_network, subject_of
from detectors.config import DetectorConfig
from detectors.model import AccessEvent
from worker.authfail import network_event
from worker.ingest.model import RawAccess

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


# ---- auth.burst: refused requests without a credential (or with unknown keys) ----------------

SCAN_PATHS = [f"/{p}" for p in (".env", ".git/config", "wp-login.php", "admin", "phpmyadmin",
              "server-status", "actuator/env", "config.json", "backup.zip", "api/v1/users",
              "api/v2/keys", "graphql", "swagger.json", "debug/pprof", "login")]  # fmt: skip


def raw(i: int, ip: str, path: str, step: float, status: int = 401, auth: str = "",
        key: int | None = None, ua: str = "curl/8.5") -> RawAccess:  # fmt: skip
    """A request as the parser keeps it (no credential unless ``key``)."""
    return RawAccess(T + i * step, ip, None, None if key is None else h(key), method="GET",
                     path=path, status=status, user_agent=ua, auth=auth)  # fmt: skip


def health_checker() -> list[RawAccess]:
    # a load balancer's checks from its pool, every 5 s for an hour, refused since auth was
    # switched on for every route
    return [raw(i, f"10.1.2.{i % 4 + 10}", "/healthz" if i % 2 else "/readyz", 5.0,
                auth="missing") for i in range(720)]  # fmt: skip


def retrying_client() -> list[RawAccess]:
    # a deployment lost its header: it pages its orders and retries each call, twice a second
    return [raw(i, "203.0.113.7", f"/v1/orders/{i // 3}?page={i % 3}", 0.5, auth="missing")
            for i in range(1000)]  # fmt: skip


def stale_key_and_none() -> list[RawAccess]:
    # a rotation gone wrong: the old key on some calls, no header on others, one endpoint
    return [raw(i, "203.0.113.7", f"/v1/users/{i}", 1.0, auth="invalid" if i % 2 else "missing",
                key=0 if i % 2 else None) for i in range(500)]  # fmt: skip


def public_endpoint() -> list[RawAccess]:
    # public endpoints answer without a key (200): not attempts, however many and varied
    return [raw(i, "203.0.113.7", SCAN_PATHS[i % 15], 0.2, status=200) for i in range(1000)]


def slow_scanner() -> list[RawAccess]:
    # one probe every 2 minutes: 5 in any 10 minutes
    return [raw(i, "203.0.113.7", SCAN_PATHS[i % 15], 120.0) for i in range(60)]


def small_recon() -> list[RawAccess]:
    # 60 probes then silence: below the attempts a burst needs
    return [raw(i, "203.0.113.7", SCAN_PATHS[i % 15], 0.5) for i in range(60)]


def scanner() -> list[RawAccess]:
    # another gateway's 401s (no verdict: "denied"), 15 endpoints, 2 per second
    return [raw(i, "203.0.113.7", SCAN_PATHS[i % 15], 0.5) for i in range(300)]


def distributed_scanner() -> list[RawAccess]:
    return [raw(i, f"203.0.113.{i % 32}", SCAN_PATHS[i % 15], 0.5, auth="missing")
            for i in range(450)]  # fmt: skip


def mixed_stuffing() -> list[RawAccess]:
    # two endpoints, no header on most tries and 8 candidate keys on every third (below the
    # 10 distinct keys of auth.enumeration): endpoints + keys reach the spread
    return [raw(i, "198.51.100.5", "/v1/login" if i % 2 else "/v1/token", 1.0,
                auth="invalid" if i % 3 == 0 else "missing", key=i % 8 if i % 3 == 0 else None)
            for i in range(150)]  # fmt: skip


def enumeration_with_burst() -> list[RawAccess]:
    # many keys: auth.enumeration says it; no burst alert on top while its streak is open
    return [raw(i, "198.51.100.5", SCAN_PATHS[i % 15], 1.0, auth="invalid", key=i % 12)
            for i in range(300)]  # fmt: skip


@pytest.mark.parametrize(
    "shape, expected",
    [
        (health_checker, []),
        (retrying_client, []),
        (stale_key_and_none, []),
        (public_endpoint, []),
        (slow_scanner, []),
        (small_recon, []),
        # a burst alerts at 100 attempts, then per doubling (the state keeps 512: 100, 200, 400)
        (scanner, [("auth.burst", "low", "log", 100), ("auth.burst", "low", "log", 200)]),
        (
            distributed_scanner,
            [
                ("auth.burst", "low", "log", 100),
                ("auth.burst", "low", "log", 200),
                ("auth.burst", "low", "log", 400),
            ],
        ),
        (mixed_stuffing, [("auth.burst", "medium", "notify", 100)]),
        (enumeration_with_burst, [("auth.enumeration", "medium", "notify", 10)]),
    ],
    ids=lambda v: v.__name__ if callable(v) else None,
)
def test_burst(shape: Any, expected: list[tuple[str, str, str, int]]) -> None:
    """Through ``worker.authfail.network_event`` (what ingest forwards), then the detector."""
    events = [e for e in map(network_event, shape()) if e is not None]
    subjects = {e.key_id for e in events}
    assert len(subjects) <= 1
    subject = next(iter(subjects), "net:203.0.113.0/24")
    _, alerts = analyze(subject, None, events, CFG, T)
    got = [(a.signals[0].type, a.severity, a.action, a.signals[0].evidence["attempts"])
           for a in alerts]  # fmt: skip
    assert got == expected
    for a in alerts:
        assert (a.kind, a.key_id, a.account_id) == ("auth_abuse", subject, None)


def test_burst_evidence_counts_attempts_without_a_credential() -> None:
    events = [e for e in map(network_event, mixed_stuffing()) if e is not None]
    _, (alert,) = analyze(events[0].key_id, None, events, CFG, T)
    ev = alert.signals[0].evidence
    assert (ev["attempts"], ev["without_key"], ev["distinct_keys"]) == (100, 66, 8)
    assert ev["auth"] == {"invalid": 34, "missing": 66}
    assert (ev["distinct_endpoints"], ev["endpoints"]) == (2, ["/v1/login", "/v1/token"])
    assert ev["ips"] == ["198.51.100.5"] and all(len(p) == 12 for p in ev["key_sha256_prefixes"])
    assert "100 refused requests" in alert.summary and "66 without a credential" in alert.summary


def test_enumeration_evidence_counts_attempts_without_a_credential() -> None:
    events = tries(["203.0.113.7"] * 10, list(range(10)))
    bare = [AccessEvent(T - 5 + i, events[0].key_id, "203.0.113.7", path="/v1/x", status=401,
                        auth="missing") for i in range(4)]  # fmt: skip
    _, (alert,) = analyze(events[0].key_id, None, bare + events, CFG, T)
    ev = alert.signals[0].evidence
    assert (ev["distinct_keys"], ev["attempts"], ev["without_key"]) == (10, 14, 4)
    assert ev["auth"] == {"missing": 4, "invalid": 10}


@pytest.mark.parametrize("size", [1, 7, 64, 450])
def test_burst_alerts_are_the_same_in_any_batching(size: int) -> None:
    """Live (any window size, state through the changelog) equals replay (one pass)."""
    events = [e for e in map(network_event, distributed_scanner()) if e is not None]
    subject = events[0].key_id
    _, whole = analyze(subject, None, events, CFG, T)
    state: NetworkState | None = None
    parts = []
    for i in range(0, len(events), size):
        batch = events[i : i + size]
        if size == len(events):
            batch = batch[::-1]  # arrival order within a batch does not matter: event time does
        state, found = analyze(subject, state, batch, CFG, T)
        state = NetworkState.from_bytes(state.to_bytes())  # through the changelog
        parts.extend(found)
    assert [a.id for a in parts] == [a.id for a in whole] and len(whole) == 3


def test_burst_thresholds_come_from_the_config() -> None:
    events = [e for e in map(network_event, small_recon()) if e is not None]
    cfg = DetectorConfig(abuse_burst_attempts=50, abuse_burst_spread=15)
    _, alerts = analyze(events[0].key_id, None, events, cfg, T)
    assert [a.signals[0].evidence["attempts"] for a in alerts] == [50]
    strict = DetectorConfig(abuse_burst_attempts=50, abuse_burst_spread=16)
    assert analyze(events[0].key_id, None, events, strict, T)[1] == []


def test_a_quiet_window_ends_the_burst_streak() -> None:
    first = [e for e in map(network_event, scanner()) if e is not None][:150]
    later = [replace(e, ts=e.ts + 3600) for e in first]
    state, a1 = analyze(first[0].key_id, None, first, CFG, T)
    _, a2 = analyze(first[0].key_id, state, later, CFG, T + 3600)
    assert len(a1) == len(a2) == 1 and a1[0].id != a2[0].id


def test_state_of_the_previous_shape_still_decodes() -> None:
    """Changelog values written before tries carried the endpoint: kept, not reset."""
    old = msgspec.msgpack.encode([[[T, "ab" * 6, "invalid", "203.0.113.7"]], 0])
    state = NetworkState.from_bytes(old)
    assert state.tries == [(T, "ab" * 6, "invalid", "203.0.113.7", "")]
    assert state.alerted_keys == state.alerted_attempts == 0

"""``keywatch replay`` carries the gateway's verdict: a revoked key still tried alerts as live."""

from __future__ import annotations

import hashlib

import orjson

from detectors.analyzer import Analyzer
from detectors.policy_file import load_policy
from geoip.resolver import GeoResolver
from worker.replay import Replay

T = 1795000000.0


def decision(i: int, auth: str) -> bytes:
    """A keywatch gateway decision on gateway.access (native; no key in it)."""
    ip = f"203.0.113.{i % 5}"
    event = {"ts": T + i, "key_id": "k-dead", "ip": ip, "method": "GET", "path": "/v1/x",
             "status": 401, "auth": auth}  # fmt: skip
    return orjson.dumps(event)


def test_replay_raises_revoked_in_use_and_does_not_profile_refusals() -> None:
    with GeoResolver() as geo:
        replay = Replay(Analyzer(geo, load_policy(None)))
        for i in range(6):
            replay.read_line(decision(i, "revoked"))
        replay.read_line(decision(6, "ok"))
        alerts = replay.run()
    (alert,) = alerts
    assert [s.type for s in alert.signals] == ["auth.revoked_in_use"]
    assert (alert.severity, alert.action) == ("medium", "notify")
    assert replay.profiles["k-dead"].incidents["auth.revoked_in_use"].count == 6


def test_replay_raises_the_per_network_alert_as_live() -> None:
    """Unknown keys refused by the gateway: rejected as unknown_key, and counted per network."""
    with GeoResolver() as geo:
        replay = Replay(Analyzer(geo, load_policy(None)))
        for i in range(12):
            tried = hashlib.sha256(f"sk_live_guess{i}".encode()).hexdigest()
            event = {"ts": T + i, "key_hash": tried, "ip": f"198.51.100.{i}", "method": "GET",
                     "path": "/v1/x", "status": 401, "auth": "invalid"}  # fmt: skip
            replay.read_line(orjson.dumps(event))
        alerts = replay.run()
    assert replay.stats.rejects["unknown_key"] == 12
    (alert,) = alerts
    assert (alert.kind, alert.key_id, alert.action) == (
        "auth_abuse",
        "net:198.51.100.0/24",
        "notify",
    )
    assert alert.signals[0].evidence["distinct_keys"] == 10


def test_replay_counts_refusals_without_a_credential_per_network() -> None:
    """A scanner's credential-less 401s: rejected as missing_key, counted per network, one
    auth.burst as live; served requests without a key (a public endpoint) count for nothing."""
    paths = [f"/probe/{i}" for i in range(12)]
    with GeoResolver() as geo:
        replay = Replay(Analyzer(geo, load_policy(None)))
        for i in range(150):
            event = {"ts": T + i, "ip": f"198.51.100.{i % 3}", "method": "GET",
                     "path": paths[i % 12], "status": 401, "auth": "missing"}  # fmt: skip
            replay.read_line(orjson.dumps(event))
            replay.read_line(orjson.dumps({**event, "ip": "192.0.2.1", "status": 200, "auth": ""}))
        alerts = replay.run()
    assert replay.stats.rejects["missing_key"] == 300
    (alert,) = alerts
    assert (alert.kind, alert.key_id, alert.severity, alert.action) == (
        "auth_abuse", "net:198.51.100.0/24", "low", "log",
    )  # fmt: skip
    (signal,) = alert.signals
    assert signal.type == "auth.burst"
    assert (signal.evidence["attempts"], signal.evidence["without_key"]) == (100, 100)

"""Refused requests no key can hold, per client network: ``auth.enumeration`` and ``auth.burst``.

Failed authentication without a known key (an unknown key hash, a bad checksum, a key that
never existed) and refused requests without any credential cannot be filed under a key, so
they are counted per client network (IPv4 /24, IPv6 /48) over a sliding window of event time.

- ``auth.enumeration``: a network that tries at least ``abuse_min_keys`` distinct unknown keys
  within ``abuse_window_s`` (medium; high at ``abuse_high_keys``).
- ``auth.burst``: a network that sends at least ``abuse_burst_attempts`` refused requests
  without a credential or with unknown keys within the window, spread over at least
  ``abuse_burst_spread`` distinct endpoints plus distinct unknown keys: a scanner or a
  credential-stuffing tool. A health checker or a client retrying without its header (or with
  its one stale key) repeats one or two endpoints and stays below the spread however often it
  tries. Low (logged and sent to the webhook: scanners are the internet's background noise),
  medium when at least two distinct unknown keys are among the attempts (someone holds
  candidate keys). Never high: no page for what nobody can act on by key. Not raised while the
  network's enumeration streak is open (that alert already says more).

Both alerts are ``kind: "auth_abuse"`` with the network as subject (``key_id:
"net:203.0.113.0/24"``): there is no key to throttle or revoke, so the action is at most
``notify`` (the response executor refuses to act on ``net:`` subjects). They carry SHA-256
prefixes of the tried keys, never a key, and count the attempts without a credential. Each
re-alerts when its count doubles, or after a quiet window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from detectors.config import DetectorConfig
from detectors.endpoint_shift import endpoint_of
from detectors.incidents import alert_id
from detectors.model import AccessEvent, Action, Alert, Severity, Signal
from detectors.revoked_in_use import network_of

TYPE = "auth.enumeration"
BURST = "auth.burst"
NET_PREFIX: Final = "net:"
PREFIX_LEN: Final = 12  # hex characters of a key hash shown as evidence
MAX_TRIES: Final = 512  # bounded state: the newest tries of a network
SAMPLE: Final = 10  # ips, prefixes and endpoints shown as evidence

# One failed attempt: (event time, key-hash prefix ("" without a credential), auth verdict,
# ip, endpoint (the path's first two segments, at most 48 characters)).
Try = tuple[float, str, str, str, str]


def is_network(subject: str | None) -> bool:
    """True for a per-network subject (``net:<cidr>``): not a key, nothing to act on."""
    return bool(subject) and str(subject).startswith(NET_PREFIX)


def subject_of(ip: str) -> str:
    """The alert subject and partitioning key of ``ip``'s network."""
    return NET_PREFIX + network_of(ip)


class NetworkState(msgspec.Struct, array_like=True, gc=False):
    """One network's recent failed attempts (``Try``) and where its alert streaks stand."""

    tries: list[Try] = []
    alerted_keys: int = 0  # distinct keys at the last enumeration alert of the streak (0: none)
    alerted_attempts: int = 0  # attempts at the last burst alert of the streak (0: none)

    def to_bytes(self) -> bytes:
        """The changelog value (msgpack)."""
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> NetworkState:
        """Decode a changelog value (also one written before tries carried the endpoint)."""
        try:
            return _DECODER.decode(raw)
        except msgspec.ValidationError:
            old = _LEGACY.decode(raw)
            return cls([(*t, "") for t in old.tries], old.alerted_keys)


class _LegacyState(msgspec.Struct, array_like=True, gc=False):
    """A changelog value of the previous version: tries without their endpoint."""

    tries: list[tuple[float, str, str, str]] = []
    alerted_keys: int = 0


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(NetworkState)
_LEGACY: Final = msgspec.msgpack.Decoder(_LegacyState)


def analyze(
    subject: str,
    state: NetworkState | None,
    events: Sequence[AccessEvent],
    cfg: DetectorConfig,
    detected_at: float,
) -> tuple[NetworkState, list[Alert]]:
    """Count ``events`` (failed attempts from the network ``subject``) and return its alerts.

    Each event's key hash travels in ``extra_key_hash`` (the ingest stage puts it there; there
    is no key identity; none for a request without a credential). Evaluated per event in
    event-time order, so any batching of the same events gives the same alerts, id for id.
    """
    st = state if state is not None else NetworkState()
    alerts: list[Alert] = []
    window, threshold = cfg.abuse_window_s, cfg.abuse_min_keys
    tries = st.tries
    for ev in sorted(events, key=lambda e: e.ts):
        start = ev.ts - window
        if tries and tries[0][0] < start:
            tries = [t for t in tries if t[0] >= start]
            if not tries:  # a quiet window ends both streaks
                st.alerted_keys = st.alerted_attempts = 0
        prefix = (ev.extra_key_hash or "")[:PREFIX_LEN]
        tries.append((ev.ts, prefix, ev.auth or "unknown", ev.ip, endpoint_of(ev.path)))
        if len(tries) > MAX_TRIES:
            del tries[: len(tries) - MAX_TRIES]
        keys = {t[1] for t in tries if t[1]}
        n = len(keys)
        if n >= threshold and n >= 2 * st.alerted_keys:
            st.alerted_keys = n
            alerts.append(_alert(subject, tries, n, ev, cfg, detected_at))
        elif _burst_due(st, len(tries), cfg) and _spread(tries, n) >= cfg.abuse_burst_spread:
            st.alerted_attempts = len(tries)
            alerts.append(_burst(subject, tries, n, ev, cfg, detected_at))
    st.tries = tries
    return st, alerts


def _burst_due(st: NetworkState, attempts: int, cfg: DetectorConfig) -> bool:
    """Enough attempts for a burst alert: the threshold, then each doubling; none while the
    enumeration streak is open."""
    return (
        attempts >= cfg.abuse_burst_attempts
        and attempts >= 2 * st.alerted_attempts
        and not st.alerted_keys
    )


def _spread(tries: list[Try], n_keys: int) -> int:
    """Distinct endpoints plus distinct unknown keys: what retrying one call never reaches."""
    return len({t[4] for t in tries}) + n_keys


def _evidence(subject: str, tries: list[Try], n: int, cfg: DetectorConfig) -> dict[str, Any]:
    """What both alerts show: counts by verdict, without a credential, samples."""
    auths: dict[str, int] = {}
    for t in tries:
        auths[t[2]] = auths.get(t[2], 0) + 1
    return {
        "network": subject[len(NET_PREFIX) :], "distinct_keys": n, "attempts": len(tries),
        "without_key": sum(1 for t in tries if not t[1]),
        "window_s": cfg.abuse_window_s, "auth": auths,
        "ips": sorted({t[3] for t in tries})[:SAMPLE],
        "key_sha256_prefixes": sorted({t[1] for t in tries if t[1]})[:SAMPLE],
    }  # fmt: skip


def _alert(
    subject: str,
    tries: list[Try],
    n: int,
    ev: AccessEvent,
    cfg: DetectorConfig,
    detected_at: float,
) -> Alert:
    network = subject[len(NET_PREFIX) :]
    severity: Severity = "high" if n >= cfg.abuse_high_keys else "medium"
    evidence = _evidence(subject, tries, n, cfg)
    summary = (
        f"Network {network} tried {n} distinct unknown keys within "
        f"{round(cfg.abuse_window_s / 60)} min ({len(tries)} failed requests): "
        "key enumeration or a leaked key list being tested"
    )
    # notify: no key to act on, people decide (block the network upstream)
    return _network_alert(subject, TYPE, n.bit_length(), severity, "notify", evidence, ev,
                          detected_at, summary)  # fmt: skip


def _network_alert(
    subject: str,
    signal: str,
    level: int,
    severity: Severity,
    action: Action,
    evidence: dict[str, object],
    ev: AccessEvent,
    detected_at: float,
    summary: str,
) -> Alert:
    """A per-network alert: its id from the network, the signal and the doubling ``level``."""
    network = subject[len(NET_PREFIX) :]
    return Alert(
        id=alert_id(subject, ev.ts, f"{signal}@{network}", level),
        kind="auth_abuse",
        key_id=subject,
        account_id=None,
        ts=ev.ts,
        detected_at=detected_at,
        severity=severity,
        action=action,
        signals=[Signal(signal, severity, evidence)],
        summary=summary,
    )


def _burst(
    subject: str,
    tries: list[Try],
    n: int,
    ev: AccessEvent,
    cfg: DetectorConfig,
    detected_at: float,
) -> Alert:
    network = subject[len(NET_PREFIX) :]
    endpoints = sorted({t[4] for t in tries})
    severity: Severity = "medium" if n >= 2 else "low"
    evidence = _evidence(subject, tries, n, cfg)
    evidence["distinct_endpoints"] = len(endpoints)
    evidence["endpoints"] = endpoints[:SAMPLE]
    attempts = len(tries)
    summary = (
        f"Network {network} sent {attempts} refused requests within "
        f"{round(cfg.abuse_window_s / 60)} min ({evidence['without_key']} without a "
        f"credential, {n} distinct unknown keys, {len(endpoints)} endpoints): "
        "a scanner or a credential-stuffing tool"
    )
    # low is logged (and reaches the webhook): the action [actions] gives low severity
    action: Action = "notify" if severity == "medium" else "log"
    return _network_alert(subject, BURST, attempts.bit_length(), severity, action, evidence, ev,
                          detected_at, summary)  # fmt: skip

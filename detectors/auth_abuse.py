"""``auth.enumeration``: one client network tries many distinct keys keywatch does not know.

Failed authentication without a known key (an unknown key hash, a bad checksum, a key that
never existed) cannot be filed under a key, so it is counted per client network (IPv4 /24,
IPv6 /48) over a sliding window of event time. A network that tries at least
``abuse_min_keys`` distinct keys within ``abuse_window_s`` raises an alert of
``kind: "auth_abuse"`` whose subject is the network (``key_id: "net:203.0.113.0/24"``): there
is no key to throttle or revoke, so the action is always ``notify`` (the response executor
refuses to act on ``net:`` subjects). The alert carries SHA-256 prefixes of the tried keys, never
a key. It re-alerts when the count doubles, or after a quiet window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from detectors.config import DetectorConfig
from detectors.incidents import alert_id
from detectors.model import AccessEvent, Alert, Signal
from detectors.revoked_in_use import network_of

TYPE = "auth.enumeration"
NET_PREFIX: Final = "net:"
PREFIX_LEN: Final = 12  # hex characters of a key hash shown as evidence
MAX_TRIES: Final = 512  # bounded state: the newest tries of a network


def is_network(subject: str | None) -> bool:
    """True for a per-network subject (``net:<cidr>``): not a key, nothing to act on."""
    return bool(subject) and str(subject).startswith(NET_PREFIX)


def subject_of(ip: str) -> str:
    """The alert subject and partitioning key of ``ip``'s network."""
    return NET_PREFIX + network_of(ip)


class NetworkState(msgspec.Struct, array_like=True, gc=False):
    """One network's recent failed attempts: (event time, key-hash prefix, auth verdict, ip)."""

    tries: list[tuple[float, str, str, str]] = []
    alerted_keys: int = 0  # distinct keys at the last alert of the current streak (0: none)

    def to_bytes(self) -> bytes:
        """The changelog value (msgpack)."""
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, raw: bytes) -> NetworkState:
        """Decode a changelog value."""
        return _DECODER.decode(raw)


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(NetworkState)


def analyze(
    subject: str,
    state: NetworkState | None,
    events: Sequence[AccessEvent],
    cfg: DetectorConfig,
    detected_at: float,
) -> tuple[NetworkState, list[Alert]]:
    """Count ``events`` (failed attempts from the network ``subject``) and return its alerts.

    Each event's key hash travels in ``extra_key_hash`` (the ingest stage puts it there; there
    is no key identity). Evaluated per event in event-time order, so any batching of the same
    events gives the same alerts, id for id.
    """
    st = state if state is not None else NetworkState()
    alerts: list[Alert] = []
    window, threshold = cfg.abuse_window_s, cfg.abuse_min_keys
    tries = st.tries
    for ev in sorted(events, key=lambda e: e.ts):
        start = ev.ts - window
        if tries and tries[0][0] < start:
            tries = [t for t in tries if t[0] >= start]
            if not tries:
                st.alerted_keys = 0  # a quiet window ends the streak
        prefix = (ev.extra_key_hash or "")[:PREFIX_LEN]
        tries.append((ev.ts, prefix, ev.auth or "unknown", ev.ip))
        if len(tries) > MAX_TRIES:
            del tries[: len(tries) - MAX_TRIES]
        keys = {t[1] for t in tries if t[1]}
        n = len(keys)
        if n >= threshold and n >= 2 * st.alerted_keys:
            st.alerted_keys = n
            alerts.append(_alert(subject, tries, n, ev, cfg, detected_at))
    st.tries = tries
    return st, alerts


def _alert(
    subject: str,
    tries: list[tuple[float, str, str, str]],
    n: int,
    ev: AccessEvent,
    cfg: DetectorConfig,
    detected_at: float,
) -> Alert:
    network = subject[len(NET_PREFIX) :]
    auths: dict[str, int] = {}
    for t in tries:
        auths[t[2]] = auths.get(t[2], 0) + 1
    prefixes = sorted({t[1] for t in tries if t[1]})[:10]
    ips = sorted({t[3] for t in tries})[:10]
    severity = "high" if n >= cfg.abuse_high_keys else "medium"
    evidence = {
        "network": network, "distinct_keys": n, "attempts": len(tries),
        "window_s": cfg.abuse_window_s, "auth": auths, "ips": ips,
        "key_sha256_prefixes": prefixes,
    }  # fmt: skip
    signal = Signal(TYPE, severity, evidence)  # type: ignore[arg-type]
    level = n.bit_length()  # one id per doubling of the count
    aid = alert_id(subject, ev.ts, f"{TYPE}@{network}", level)
    return Alert(
        id=aid,
        kind="auth_abuse",
        key_id=subject,
        account_id=None,
        ts=ev.ts,
        detected_at=detected_at,
        severity=severity,  # type: ignore[arg-type]
        action="notify",  # no key to act on: people decide (block the network upstream)
        signals=[signal],
        summary=(
            f"Network {network} tried {n} distinct unknown keys within "
            f"{round(cfg.abuse_window_s / 60)} min ({len(tries)} failed requests): "
            "key enumeration or a leaked key list being tested"
        ),
    )

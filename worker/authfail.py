"""Failed authentication no key can hold, routed per client network (detectors.auth_abuse).

The ingest stage dead-letters a request whose key keywatch does not know (``unknown_key``), or
that carries no credential at all (``missing_key``, rejected at parsing with what could be
parsed of it), and, when the gateway refused it, also forwards it as an event whose identity is
its client network (``net:203.0.113.0/24``) through the same re-keying path: partitioned by
that string (worker.partitioning), so every failed attempt of a network meets its state on one
worker. The tried key travels only as its SHA-256 (``extra_key_hash``; none without a
credential). The profile stage and replay hand these groups to ``auth_abuse.analyze`` instead
of the key analyzer.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any, Final

import structlog

from detectors import auth_abuse
from detectors.auth_abuse import NetworkState, is_network, subject_of
from detectors.config import DetectorConfig
from detectors.model import AccessEvent, Alert
from worker.eventcodec import Row, row_of
from worker.ingest.model import RawAccess

log = structlog.get_logger(__name__)

# Verdicts of keywatch gateway for a request it refused; other gateways say nothing ("") but
# answer 401/403 for a key they do not accept.
FAILED = frozenset({"invalid", "missing", "revoked", "expired"})
DENIED_STATUS = frozenset({401, 403})
_SUBJECTS: dict[str, str] = {}  # ip -> its network subject (bounded: cleared when full)
_SUBJECTS_MAX: Final = 16_384


def network_event(raw: RawAccess) -> AccessEvent | None:
    """A refused request with an unknown key, or without any credential, as a per-network
    event (None if not one)."""
    if raw.key_hash is None and raw.key_id is not None:
        return None  # a gateway's id the store does not know: no hash to count
    if raw.auth not in FAILED and not (raw.auth == "" and raw.status in DENIED_STATUS):
        return None  # served by its gateway (public endpoints need no key): not an attempt
    # No key hash (no credential): one more attempt, not one more distinct key. Built directly
    # (not dataclasses.replace + to_event): a scanner's flood takes this path per request.
    return AccessEvent(
        ts=raw.ts, key_id=_subject(raw.ip), ip=raw.ip, method=raw.method, path=raw.path,
        status=raw.status, user_agent=raw.user_agent, request_id=raw.request_id,
        gateway=raw.gateway, account_id=raw.account_id, key_in_query=raw.key_in_query,
        fmt=raw.fmt, extra_key_hash=raw.key_hash, auth=raw.auth or "denied",
    )  # fmt: skip


def _subject(ip: str) -> str:
    """``subject_of``, cached: parsing the address is most of the cost of an attempt, and a
    flood comes from few addresses."""
    subject = _SUBJECTS.get(ip)
    if subject is None:
        if len(_SUBJECTS) >= _SUBJECTS_MAX:
            _SUBJECTS.clear()
        subject = _SUBJECTS[ip] = subject_of(ip)
    return subject


def network_row(raw: RawAccess) -> tuple[str, Row] | None:
    """``network_event`` as a ``(partitioning key, batch row)`` for the re-keying path."""
    ev = network_event(raw)
    return None if ev is None else (ev.key_id, row_of(ev))


def take_networks(groups: dict[str, list[AccessEvent]]) -> dict[str, list[AccessEvent]]:
    """Remove the per-network groups from ``groups`` (they are no keys) and return them."""
    nets = [k for k in groups if is_network(k)]
    return {k: groups.pop(k) for k in nets}


def analyze_networks(
    table: MutableMapping[str, Any],
    nets: dict[str, list[AccessEvent]],
    cfg: DetectorConfig,
    now: float,
) -> list[Alert]:
    """Run ``auth_abuse`` over each network's events, its state kept in ``table``."""
    alerts: list[Alert] = []
    for subject, events in nets.items():
        stored = table.get(subject)
        try:
            state = NetworkState.from_bytes(stored) if isinstance(stored, bytes) else stored
            state, found = auth_abuse.analyze(subject, state, events, cfg, now)
        except Exception as exc:  # a bad stored state must not stop the stream: start over
            log.warning("network_state_reset", subject=subject, error=repr(exc))
            state, found = auth_abuse.analyze(subject, None, events, cfg, now)
        table[subject] = state
        alerts.extend(found)
    return alerts

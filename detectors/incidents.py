"""Incidents: one per key and signal type while evidence keeps arriving within the cooldown.

Repeated evidence bumps the incident's count and keeps it open (the cooldown runs from the last
evidence). An alert is raised only when a signal type opens on the key, or when the policy's
combined decision for everything open escalates past what was already alerted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ulid import ULID

from detectors.model import ACTION_RANK, SEVERITY_RANK, Signal
from detectors.policy import Decision
from detectors.profile import Incident, KeyProfile
from detectors.summary import phrase


@dataclass(slots=True)
class Update:
    """What one event's signals did to the key's incidents."""

    opened: list[Signal]  # signals whose type opened a new incident
    open_signals: list[Signal]  # every open incident, oldest first, this event's evidence last


def expire(profile: KeyProfile, ts: float, cooldown_s: float) -> None:
    """Close incidents whose last evidence is older than the cooldown."""
    stale = [t for t, inc in profile.incidents.items() if ts - inc.last_seen > cooldown_s]
    for t in stale:
        del profile.incidents[t]


def record(profile: KeyProfile, signals: Sequence[Signal], ts: float, cooldown_s: float) -> Update:
    """Open or bump one incident per signal type; return what opened and what is open."""
    expire(profile, ts, cooldown_s)
    opened: list[Signal] = []
    current: dict[str, Signal] = {}
    for s in signals:
        inc = profile.incidents.get(s.type)
        if inc is None:
            profile.incidents[s.type] = Incident(s.severity, ts, ts, note=phrase(s))
            opened.append(s)
        else:
            inc.count += 1
            inc.last_seen = max(inc.last_seen, ts)
            if SEVERITY_RANK[s.severity] > SEVERITY_RANK[inc.severity]:
                inc.severity = s.severity
        current[s.type] = s
    older = sorted((inc.opened, t, inc) for t, inc in profile.incidents.items() if t not in current)
    open_signals = [
        Signal(
            t,
            inc.severity,  # type: ignore[arg-type]
            {
                "open_since": round(inc.opened),
                "last_seen": round(inc.last_seen),
                "count": inc.count,
                "summary": inc.note,
            },
        )
        for _, t, inc in older
    ]
    open_signals.extend(current.values())
    return Update(opened, open_signals)


def rank(decision: Decision) -> int:
    """Escalation level of a decision (severity first, then action)."""
    return SEVERITY_RANK[decision.severity] * 10 + ACTION_RANK[decision.action]


def should_alert(profile: KeyProfile, update: Update, level: int) -> bool:
    """A new signal type opened, or the decision is above every open incident's alerted level."""
    if update.opened:
        return True
    return level > max((inc.alert_rank for inc in profile.incidents.values()), default=0)


def mark_alerted(profile: KeyProfile, alert_id: str, level: int) -> None:
    """Remember the alert on every open incident (new ones take its id)."""
    for inc in profile.incidents.values():
        inc.alert_rank = max(inc.alert_rank, level)
        if not inc.alert_id:
            inc.alert_id = alert_id


def alert_id(key_id: str, ts: float, identity: str, level: int) -> str:
    """A ULID: time part = event time, random part = hash(key, incident identity, level).

    Reprocessing the same events (after a crash) yields the same id; downstream dedupes on it.
    """
    digest = hashlib.blake2b(f"{key_id}|{identity}|{level}".encode(), digest_size=10).digest()
    ms = max(0, round(ts * 1000)).to_bytes(6, "big")
    return str(ULID.from_bytes(ms + digest))

"""A person said "benign": teach the key's profile what the alert was about.

The profile knows how to make a behaviour normal (``KeyProfile.learn_feedback``: the country,
place, network or client becomes established, the hour usual, the volume maxima lifted); this
module maps an alert's signals onto it. Impossible travel names two places, each learned. A key
in a query string or a second key in a request is a practice to fix, not a behaviour: nothing
is learned, but the incident is closed. Pure: no I/O, no clock (the time comes with the verdict).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from detectors.config import DetectorConfig
from detectors.profile import KeyProfile
from detectors.registry import detector_types

# Signals about how a request was made, not about the key's usage: nothing to learn.
NOTHING_TO_LEARN = frozenset({"transport.key_in_query", "transport.second_key"})
_DETECTED = frozenset(detector_types())


def learn_feedback(
    profile: KeyProfile,
    signal_type: str,
    evidence: Mapping[str, Any],
    ts: float,
    cfg: DetectorConfig | None = None,  # kept for callers; the profile uses its own
) -> bool:
    """Teach ``profile`` that one signal's behaviour is normal; True when something was learned."""
    if signal_type in NOTHING_TO_LEARN:
        profile.incidents.pop(signal_type, None)
        return False
    if signal_type not in _DETECTED:  # a type this release does not raise: nothing to teach
        return False
    if signal_type == "geo.impossible_travel":
        learned = False
        for end in (evidence.get("from"), evidence.get("to")):
            if isinstance(end, Mapping):
                learned |= profile.learn_feedback(signal_type, dict(end), ts)
        return learned
    return profile.learn_feedback(signal_type, dict(evidence), ts)


def apply_benign(
    profile: KeyProfile,
    signals: Iterable[Mapping[str, Any]],
    ts: float,
    cfg: DetectorConfig | None = None,
) -> list[str]:
    """Learn every signal of a benign incident and close its detector incidents; the types."""
    types: set[str] = set()
    for s in signals:
        kind, evidence = s.get("type"), s.get("evidence")
        if isinstance(kind, str) and isinstance(evidence, Mapping):
            types.add(kind)
            learn_feedback(profile, kind, evidence, ts, cfg)
    for kind in types:
        profile.incidents.pop(kind, None)
    return sorted(types)

"""Detector tuning: one frozen dataclass, built once and passed in (never a global).

Defaults are the values the quality evaluation (``benchmarks/eval_quality.py``) was tuned with.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.model import GeoInfo

DAY = 86_400.0
HOUR = 3_600.0


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Thresholds, windows and learning parameters for every detector."""

    # Learning: a key is "learned" once it has min_days of history and min_events events, or
    # max_days of history whatever its volume (so ordinary traffic finishes within 7 days).
    learn_min_days: float = 3.0
    learn_min_events: int = 200
    learn_max_days: float = 7.0
    # A key idle this long starts learning again (its rate and hours are stale).
    relearn_after_s: float = 30 * DAY

    # Incidents: one per key and signal type while evidence keeps arriving within the cooldown.
    cooldown_s: float = 6 * HOUR

    # usage.spike: a minute is "hot" at >= ratio x the hour-of-week baseline (and >= the floor);
    # a spike is min_hot_minutes hot minutes within the last window_minutes.
    spike_ratio: float = 10.0
    spike_floor_per_hour: float = 240.0
    spike_window_minutes: int = 5
    spike_min_hot_minutes: int = 3
    # The baseline never falls below this fraction of the key's typical busy-hour rate, so
    # an ordinary rate at an unusual hour is off-hours (low), not a spike (high).
    spike_level_fraction: float = 0.3

    # geo.impossible_travel.
    # ref: Panther's impossible-travel helper flags > 900 km/h (airliner cruise speed); Datadog
    # Cloud SIEM's impossible-travel detection uses ~1000 km/h and ignores short distances.
    travel_max_kmh: float = 1000.0
    travel_min_km: float = 500.0
    # A location seen this many times is "known": moves between known locations (multi-region
    # deployments) are not travel.
    travel_known_min_count: int = 20

    # time.off_hours: an hour of day (UTC) is usual when the key was active in it, or in the hour
    # before or after (one hour of tolerance absorbs DST shifts of local-time office keys), and
    # the key must have been active in at least this many hour slots for a gap to mean anything.
    off_hours_min_active_slots: int = 24
    off_hours_tolerance_h: int = 1

    # Hours closed while an incident is open are not learned (an attacker must not train it).
    # EWMA weights: hour-of-week buckets adapt week over week, hour-of-day day over day.
    ewma_week: float = 0.4
    ewma_day: float = 0.2
    ewma_level: float = 0.05

    # Events this far ahead of the caller's clock are treated as clock skew (clamped).
    max_future_skew_s: float = 300.0


class EvalContext:
    """Per-event facts computed once by the analyzer and shared by every detector.

    One instance is reused for a whole batch (the analyzer overwrites its fields per event) so
    the hot path allocates nothing for it.
    """

    __slots__ = ("config", "geo", "hour_of_day", "late", "place")

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.geo: GeoInfo | None = None
        self.place = ""  # "CC/City" of geo, "" when unknown
        self.late = False  # older than the newest event already seen for the key
        self.hour_of_day = 0  # UTC

    def set(self, ts: float, geo: GeoInfo | None, late: bool = False) -> EvalContext:
        """Fill in the facts for one event (tests use this; the analyzer inlines it)."""
        self.geo, self.late = geo, late
        self.place = place_of(geo)
        self.hour_of_day = (int(ts) // 3600) % 24
        return self


def place_of(geo: GeoInfo | None) -> str:
    """The "CC/City" identity of a located GeoInfo, "" when it has no coordinates."""
    if geo is None or geo.lat is None or geo.lon is None:
        return ""
    return f"{geo.country or '??'}/{geo.city or ''}"

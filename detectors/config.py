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

    # usage.spike: volume against the key's own burstiness. The profile keeps decaying maxima of
    # its busiest minute, 5 minutes and hour (decay per active hour: half-life ~35 active hours);
    # a window is abnormal at >= volume_ratio x its maximum (each maximum at least peak_floor)
    # and at least volume_floor requests. Alone, volume is "low" (logged: a first weekly batch
    # looks like this); it becomes "medium" (notify) when it persists volume_escalate_s, and
    # together with a new place, network or a sudden spread it is compromise evidence.
    volume_ratio: float = 3.0
    peak_decay: float = 0.98
    peak_floor: tuple[float, float, float] = (3.0, 8.0, 30.0)
    volume_floor: tuple[int, int, int] = (20, 40, 150)
    # Hourly volume while the event comes from a place or country the key has not established
    # is also tested against level_ratio x the key's typical busy hour (its EWMA level): a key
    # whose weekly batch set a high peak is still flooded from a new place.
    level_ratio: float = 10.0
    volume_escalate_s: float = 3600.0
    # A minute at >= burst_ratio x the key's busiest minute (and >= burst_floor requests) whose
    # extra volume goes to one endpoint (>= burst_share of it beyond that endpoint's usual
    # share), in an hour of day the key has worked in on 3 days, is "medium" at once: an order
    # of magnitude over anything the key did, on one resource, in its owner's working hours.
    burst_ratio: float = 10.0
    burst_floor: int = 100
    burst_share: float = 0.6

    # usage.endpoint_shift: abnormal volume (a usage.spike window over its threshold) of which
    # one endpoint carries >= endpoint_share of the hour's requests while it carried less than
    # 1/endpoint_ratio of that in the key's mix (>= endpoint_min_history requests learned).
    endpoint_share: float = 0.6
    endpoint_ratio: float = 4.0
    endpoint_min_history: int = 500

    # network.spread: countries the key has not established, seen within one clock hour.
    spread_min_countries: int = 4
    spread_critical_countries: int = 8
    # Keys with this many established places/countries are "spread" (fleets, multi-region):
    # judged by their country set; a new city, or a move between places, is not news for them.
    spread_key_places: int = 3
    spread_key_countries: int = 3
    # Keys with this many established networks (ASNs) are judged by network class: a new ASN of
    # a class they use (another cloud region's AS, another ISP of a fleet) is not news.
    spread_key_asns: int = 3

    # network.fanout: distinct client networks (IPv4 /24, IPv6 /48) within one clock hour,
    # against the key's own busiest such hour (decaying maximum, like the volume peaks). An
    # office or a developer uses one to three networks an hour; a fleet its own dozens, every
    # hour. A leaked key shared or used by a botnet suddenly comes from many more. Low at
    # fanout_ratio x the key's maximum (at least fanout_min_networks), medium at twice that.
    fanout_min_networks: int = 8
    fanout_ratio: float = 3.0

    # geo.impossible_travel.
    # ref: Panther's impossible-travel helper flags > 900 km/h (airliner cruise speed); Datadog
    # Cloud SIEM's impossible-travel detection uses ~1000 km/h and ignores short distances.
    travel_max_kmh: float = 1000.0
    travel_min_km: float = 500.0

    # time.off_hours: an hour of day (UTC) is usual when the key was active in it, or in the hour
    # before or after (one hour of tolerance absorbs DST shifts of local-time office keys), and
    # the key must have been active in at least this many hour slots for a gap to mean anything.
    off_hours_min_active_slots: int = 24
    off_hours_tolerance_h: int = 1

    # Hours are always learned (off-hours is never evidence on its own). Volume baselines are not
    # learned from hours a young volume incident touched (an attacker must not train them).
    # EWMA weights: hour-of-week buckets adapt week over week, hour-of-day day over day.
    ewma_week: float = 0.4
    ewma_day: float = 0.2
    ewma_level: float = 0.05

    # auth.enumeration (detectors/auth_abuse.py): distinct unknown keys one client network
    # (IPv4 /24, IPv6 /48) tries within a sliding window of event time. A person mistyping a
    # key tries a few; a rotation gone wrong repeats one stale key; a list being tested tries
    # many. Medium at abuse_min_keys, high at abuse_high_keys; the action is always notify.
    abuse_window_s: float = 600.0
    abuse_min_keys: int = 10
    abuse_high_keys: int = 50
    # auth.burst (same module, same window): refused requests without a credential or with
    # unknown keys from one network, at least abuse_burst_attempts (at most 512, the state's
    # bound; 100 in 10 minutes is one every 6 s, sustained), spread over at least
    # abuse_burst_spread distinct endpoints plus distinct unknown keys. A health checker or a
    # client retrying without its header hits one or two endpoints however often it tries; a
    # scanner walks dozens. Low (logged, webhook); medium with 2+ unknown keys; never pages.
    abuse_burst_attempts: int = 100
    abuse_burst_spread: int = 10

    # auth.revoked_in_use: a dead key tried from one network is a forgotten deployment or the
    # thief; from this many distinct client networks (IPv4 /24, IPv6 /48) within one incident,
    # its secret is spread (a public leak, a shared list): high, which pages.
    revoked_networks_high: int = 3

    # Events this far ahead of the caller's clock are treated as clock skew (clamped).
    max_future_skew_s: float = 300.0


class EvalContext:
    """Per-event facts computed once by the analyzer and shared by every detector.

    One instance is reused for a whole batch (the analyzer overwrites its fields per event) so
    the hot path allocates nothing for it.
    """

    __slots__ = ("agent", "config", "geo", "hour_of_day", "late", "place")

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.geo: GeoInfo | None = None
        self.place = ""  # "CC/City" of geo, "" when unknown
        self.late = False  # older than the newest event already seen for the key
        self.hour_of_day = 0  # UTC
        self.agent = ""  # user-agent family ("python-requests"), "" when none

    def set(
        self, ts: float, geo: GeoInfo | None, late: bool = False, user_agent: str = ""
    ) -> EvalContext:
        """Fill in the facts for one event (tests use this; the analyzer inlines it)."""
        self.geo, self.late, self.agent = geo, late, agent_family(user_agent)
        self.place = place_of(geo)
        self.hour_of_day = (int(ts) // 3600) % 24
        return self


def place_of(geo: GeoInfo | None) -> str:
    """The "CC/City" identity of a located GeoInfo, "" when it has no coordinates."""
    if geo is None or geo.lat is None or geo.lon is None:
        return ""
    return f"{geo.country or '??'}/{geo.city or ''}"


def agent_family(user_agent: str) -> str:
    """The product part of a user agent ("python-requests/2.31" -> "python-requests")."""
    if not user_agent:
        return ""
    return user_agent.split("/", 1)[0].split(" ", 1)[0].strip().lower()[:32]

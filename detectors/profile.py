"""Per-key usage profile: where, when and how much a key is used, bounded and compact.

What a profile holds (every collection capped, least-used entry evicted first):

- countries (<= 8): count and last seen; places "CC/City" (<= 6) with coordinates; ASNs (<= 8);
- a request-rate baseline: 168 hour-of-week EWMAs (UTC, Monday 00:00 = 0), 24 hour-of-day EWMAs
  and a "busy-hour level" (EWMA of the key's non-empty hours), plus the current partial hour's
  count and a ring of per-minute counts for spike detection;
- per hour of day, the number of hour slots in which the key was active (off-hours detection);
- the last location and its time (impossible travel);
- learning state (see ``DetectorConfig``: learned after 3 days and 200 events, or 7 days);
- open incidents per signal type.

Serialized with msgpack as a versioned array; rates are stored as log-quantized uint16
(0.06 % resolution). A busy key with every collection full serializes to ~1.2 KB (measured
in tests/unit/detectors/test_profile.py; the bound asserted there is 2 KB).
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import msgpack

from detectors.config import DetectorConfig
from detectors.model import GeoInfo

VERSION = 1
MAX_COUNTRIES = 8
MAX_PLACES = 6
MAX_ASNS = 8
RING = 8  # per-minute slots kept; >= any sensible spike window
# 1970-01-01 was a Thursday: shift absolute hours so that Monday 00:00 UTC is bucket 0.
_WEEK_OFFSET_H = 72
_Q = 1800.0  # log-quantization steps per e-fold
_UNKNOWN = -1.0
_NON_RATE_TYPES = frozenset({"transport.key_in_query", "transport.second_key"})


def hour_of_week(abs_hour: int) -> int:
    """Hour-of-week bucket (Monday 00:00 UTC = 0) of an absolute hour number (epoch // 3600)."""
    return (abs_hour + _WEEK_OFFSET_H) % 168


def _quantize(values: list[float]) -> bytes:
    out = array("H", (0 if v < 0 else min(65535, 1 + round(math.log1p(v) * _Q)) for v in values))
    return out.tobytes()


def _dequantize(raw: bytes) -> list[float]:
    arr = array("H")
    arr.frombytes(raw)
    return [_UNKNOWN if q == 0 else math.expm1((q - 1) / _Q) for q in arr]


def _evict(table: dict[Any, list[Any]], cap: int) -> None:
    """Drop the least used entries (fewest uses, then oldest) until there is room for one more."""
    while len(table) >= cap:
        victim = min(table, key=lambda k: (table[k][0], table[k][1]))
        del table[victim]


class Incident:
    """An open incident: one per key and signal type while evidence keeps coming."""

    __slots__ = ("alert_id", "alert_rank", "count", "last_seen", "note", "opened", "severity")

    def __init__(
        self,
        severity: str,
        opened: float,
        last_seen: float,
        count: int = 1,
        alert_id: str = "",
        alert_rank: int = 0,
        note: str = "",
    ) -> None:
        self.severity = severity
        self.opened = opened
        self.last_seen = last_seen
        self.count = count
        self.alert_id = alert_id
        self.alert_rank = alert_rank
        self.note = note  # the summary phrase of its first evidence, for later alerts

    def to_list(self) -> list[Any]:
        """Compact serialized form."""
        return [
            self.severity,
            round(self.opened),
            round(self.last_seen),
            self.count,
            self.alert_id,
            self.alert_rank,
            self.note,
        ]


class KeyProfile:
    """Everything keywatch remembers about one key (see the module docstring)."""

    __slots__ = (
        "asns",
        "countries",
        "cur_count",
        "cur_hour",
        "first_ts",
        "hod",
        "hour_slots",
        "how",
        "incidents",
        "last_ts",
        "learn_start",
        "learned",
        "level",
        "loc_acc",
        "loc_country",
        "loc_key",
        "loc_lat",
        "loc_lon",
        "loc_ts",
        "places",
        "ring",
        "ring_minute",
        "spike_baseline",
        "spike_min_count",
        "total_events",
        "usual_hours",
    )

    def __init__(self) -> None:
        self.first_ts = -1.0
        self.last_ts = -1.0
        self.learn_start = -1.0
        self.learned = False
        self.total_events = 0
        self.countries: dict[str, list[int]] = {}  # cc -> [count, last_seen_s]
        self.places: dict[str, list[Any]] = {}  # "CC/City" -> [count, last_seen_s, lat, lon]
        self.asns: dict[int, list[int]] = {}  # asn -> [count, last_seen_s]
        self.how: list[float] = [_UNKNOWN] * 168
        self.hod: list[float] = [_UNKNOWN] * 24
        self.level = 0.0
        self.hour_slots: list[int] = [0] * 24
        self.cur_hour = -1
        self.cur_count = 0
        self.ring: list[int] = [0] * RING
        self.ring_minute = -1
        self.loc_ts = -1.0
        self.loc_lat = 0.0
        self.loc_lon = 0.0
        self.loc_acc = 0.0
        self.loc_country = ""
        self.loc_key = ""
        self.incidents: dict[str, Incident] = {}
        # Derived once per hour (not serialized): spike threshold and usual-hours mask.
        self.spike_baseline = 0.0
        self.spike_min_count = 1 << 30
        self.usual_hours = (1 << 24) - 1

    # ---- rate bookkeeping (hot path) -------------------------------------------------------

    def count_event(self, ts: float, cfg: DetectorConfig) -> bool:
        """Count one event in the rate state; returns True when it is late (older than the last).

        Late events (reordered across batches or by a gateway's skewed clock) count towards the
        still-open hour and minute only; closed hours are never rewritten.
        """
        minute = int(ts) // 60
        # Common case first: same minute as the newest event, and not so idle it relearns.
        if (
            minute == self.ring_minute
            and self.first_ts >= 0
            and 0 <= ts - self.last_ts < cfg.relearn_after_s
        ):
            self.last_ts = ts
            self.total_events += 1
            self.cur_count += 1
            self.ring[minute % RING] += 1
            return False
        if ts < self.last_ts:
            if minute // 60 == self.cur_hour:
                self.cur_count += 1
            if self.ring_minute - RING < minute <= self.ring_minute:
                self.ring[minute % RING] += 1
            self.total_events += 1
            return True
        if self.first_ts < 0 or ts - self.last_ts >= cfg.relearn_after_s:
            self.start_learning(ts)
        self.last_ts = ts
        self.total_events += 1
        if minute != self.ring_minute:
            hour = minute // 60
            if hour != self.cur_hour:
                self.advance_hour(hour, ts, cfg)
            self._advance_minute(minute)
        self.cur_count += 1
        self.ring[minute % RING] += 1
        return False

    def _advance_minute(self, minute: int) -> None:
        ring = self.ring
        for m in range(max(self.ring_minute + 1, minute - RING + 1), minute + 1):
            ring[m % RING] = 0
        self.ring_minute = minute

    def advance_hour(self, hour: int, ts: float, cfg: DetectorConfig) -> None:
        """Close the current hour (and learn the empty ones since), then derive thresholds."""
        if self.cur_hour >= 0:
            self._learn_hour(self.cur_hour, self.cur_count, cfg)
            for h in range(self.cur_hour + 1, min(hour, self.cur_hour + 169)):
                self._learn_hour(h, 0, cfg)
        self.cur_hour = hour
        self.cur_count = 0
        span = ts - self.learn_start
        if not self.learned and (
            span >= cfg.learn_max_days * 86400
            or (span >= cfg.learn_min_days * 86400 and self.total_events >= cfg.learn_min_events)
        ):
            self.learned = True
        self._derive(hour, cfg)

    def _learn_hour(self, hour: int, n: int, cfg: DetectorConfig) -> None:
        start = hour * 3600
        for t, inc in self.incidents.items():
            if inc.last_seen >= start and t not in _NON_RATE_TYPES:
                return  # an incident touched this hour: do not learn from it
        w, d = hour_of_week(hour), hour % 24
        how, hod = self.how, self.hod
        how[w] = n if how[w] < 0 else how[w] + cfg.ewma_week * (n - how[w])
        hod[d] = n if hod[d] < 0 else hod[d] + cfg.ewma_day * (n - hod[d])
        if n > 0:
            self.level = n if self.level <= 0 else self.level + cfg.ewma_level * (n - self.level)
            self.hour_slots[d] = min(self.hour_slots[d] + 1, 65535)

    def _derive(self, hour: int, cfg: DetectorConfig) -> None:
        base = max(self.how[hour_of_week(hour)], self.hod[hour % 24], 0.0)
        base = max(base, self.level * cfg.spike_level_fraction)
        self.spike_baseline = base
        per_hour = max(cfg.spike_ratio * base, cfg.spike_floor_per_hour)
        self.spike_min_count = max(1, math.ceil(per_hour / 60.0))
        slots = self.hour_slots
        if sum(slots) < cfg.off_hours_min_active_slots:
            self.usual_hours = (1 << 24) - 1
            return
        tol, mask = cfg.off_hours_tolerance_h, 0
        for d in range(24):
            if any(slots[(d + k) % 24] for k in range(-tol, tol + 1)):
                mask |= 1 << d
        self.usual_hours = mask

    def start_learning(self, ts: float) -> None:
        """(Re)start learning: a new key, or one idle so long that its rhythm is stale."""
        if self.first_ts < 0:
            self.first_ts = ts
        self.learn_start = ts
        self.learned = False
        self.total_events = 0
        self.how = [_UNKNOWN] * 168
        self.hod = [_UNKNOWN] * 24
        self.level = 0.0
        self.hour_slots = [0] * 24
        self.cur_hour = -1
        self.cur_count = 0
        self.ring = [0] * RING
        self.ring_minute = -1
        self.loc_ts = -1.0
        self.loc_key = ""

    # ---- places (after the detectors ran on the event) -------------------------------------

    def observe_geo(self, ts: float, geo: GeoInfo, place: str, late: bool) -> None:
        """Record where the event came from; late events do not move the last location."""
        its = int(ts)
        c = geo.country
        if c is not None:
            e = self.countries.get(c)
            if e is None:
                _evict(self.countries, MAX_COUNTRIES)
                self.countries[c] = [1, its]
            else:
                e[0] += 1
                e[1] = max(e[1], its)
        if geo.asn is not None:
            a = self.asns.get(geo.asn)
            if a is None:
                _evict(self.asns, MAX_ASNS)
                self.asns[geo.asn] = [1, its]
            else:
                a[0] += 1
                a[1] = max(a[1], its)
        if geo.lat is None or geo.lon is None:
            return
        p = self.places.get(place)
        if p is None:
            _evict(self.places, MAX_PLACES)
            self.places[place] = [1, its, round(geo.lat, 2), round(geo.lon, 2)]
        else:
            p[0] += 1
            p[1] = max(p[1], its)
        if not late:
            self.loc_ts, self.loc_lat, self.loc_lon = ts, geo.lat, geo.lon
            self.loc_acc = geo.accuracy_km or 0.0
            self.loc_country, self.loc_key = c or "", place

    def add_geo_run(self, geo: GeoInfo, place: str, n: int, last_s: int) -> None:
        """Count ``n`` more events located at ``geo`` (latest at ``last_s``) in one step.

        Same result as ``observe_geo`` per event for events located exactly like one that was
        just observed: its entries exist already, so only their counts and last-seen move.
        """
        entries = (
            self.countries.get(geo.country) if geo.country is not None else None,
            self.asns.get(geo.asn) if geo.asn is not None else None,
            self.places.get(place) if place else None,
        )
        for e in entries:
            if e is not None:
                e[0] += n
                if last_s > e[1]:
                    e[1] = last_s

    def place_count(self, place: str) -> int:
        """How often the key was seen at a place ("CC/City")."""
        p = self.places.get(place)
        return 0 if p is None else int(p[0])

    # ---- serialization --------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact, versioned msgpack form (≤ 2 KB for any key)."""
        loc = None
        if self.loc_ts >= 0:
            loc = [
                round(self.loc_ts * 1000),
                round(self.loc_lat, 3),
                round(self.loc_lon, 3),
                round(self.loc_acc),
                self.loc_country,
                self.loc_key,
            ]
        body = [
            VERSION,
            round(self.first_ts),
            round(self.last_ts * 1000),
            round(self.learn_start),
            self.learned,
            self.total_events,
            self.countries,
            self.places,
            self.asns,
            _quantize(self.how),
            _quantize(self.hod),
            round(self.level, 2),
            array("H", self.hour_slots).tobytes(),
            self.cur_hour,
            self.cur_count,
            self.ring_minute,
            self.ring,
            loc,
            {t: inc.to_list() for t, inc in self.incidents.items()},
        ]
        return msgpack.packb(body, use_bin_type=True, use_single_float=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, raw: bytes, cfg: DetectorConfig | None = None) -> KeyProfile:
        """Inverse of ``to_bytes``; raises ``ValueError`` on a corrupt or unknown version."""
        try:
            b = msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True)
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            raise ValueError(f"corrupt key profile: {exc}") from exc
        if not isinstance(b, list) or not b or b[0] != VERSION or len(b) != 19:
            raise ValueError("unknown key profile version")
        p = cls()
        p.first_ts, p.last_ts, p.learn_start = float(b[1]), b[2] / 1000.0, float(b[3])
        p.learned, p.total_events = bool(b[4]), int(b[5])
        p.countries, p.places, p.asns = b[6], b[7], b[8]
        p.how, p.hod, p.level = _dequantize(b[9]), _dequantize(b[10]), float(b[11])
        slots = array("H")
        slots.frombytes(b[12])
        p.hour_slots = list(slots)
        p.cur_hour, p.cur_count, p.ring_minute, p.ring = b[13], b[14], b[15], b[16]
        if b[17] is not None:
            ms, p.loc_lat, p.loc_lon, p.loc_acc, p.loc_country, p.loc_key = b[17]
            p.loc_ts = ms / 1000.0
        p.incidents = {t: Incident(*v) for t, v in b[18].items()}
        if p.cur_hour >= 0:
            p._derive(p.cur_hour, cfg or DetectorConfig())
        return p

"""Per-key usage profile: where, when and how much a key is used, bounded and compact.

What a profile holds (every table capped, the least established entry evicted first):

- countries (<= 8), places "CC/City" (<= 8, with coordinates), ASNs (<= 8), user-agent families
  (<= 4), each with its count, last-seen time and the number of distinct days it was seen on.
  An entry seen on ``ESTABLISHED_DAYS`` distinct days is *established* (normal for the key): a
  place becomes known by being used over time, not by a burst of requests, so an attacker's
  probe does not make its place known. Established entries also go into ``known``, a 512-bit
  hashed set (two hash positions per entry) that outlives the bounded tables, so an evicted
  country of a CI fleet does not come back as "new";
- the key's spread: how many countries and places are established (keys used from many places
  are judged at the level that is stable for them);
- volume: a ring of per-minute counts, this hour's count, and decaying maxima of the key's busiest
  minute, five minutes and hour (its own burstiness), which decay per *active* hour so quiet
  weekends do not shrink them; 168 hour-of-week and 24 hour-of-day EWMAs (for reports);
- per hour of day, the number of hour slots in which the key was active (off-hours detection);
- the last location and its time (impossible travel); countries not established seen this hour
  (spread); learning state (see ``DetectorConfig``); open incidents per signal type;
- network classes (hosting, vpn, tor, isp; geoip.netclass) the key has established, in the
  hashed set: a class is established with its first established ASN (or when first seen while
  learning), so it costs no table of its own;
- the client networks (IPv4 /24, IPv6 /48) seen this hour, as a 128-bit linear-counting sketch
  (16 bytes; distinct count estimated from the bits set, within a few percent up to ~150), and
  a decaying maximum of that count per active hour: the key's own fan-out (fleets and
  multi-region services use many networks every hour, an office one or two).
- its endpoint mix: requests per endpoint ("/v1/users", kept as a 16-bit hash of the name),
  this hour's and all closed hours' (<= 8 endpoints, the rest counted together; halved when
  large, so old use fades; 6 bytes per endpoint serialized).

Serialized as a typed, versioned ``detectors.record.ProfileRecord`` (msgpack, array-like, new
fields appended with defaults; version 1 profiles decode and are migrated). A busy key with every
table full serializes to ~2 KB (asserted <= 2 KB in tests/unit/detectors/test_profile.py).
"""

from __future__ import annotations

import math
import zlib
from array import array
from functools import lru_cache
from typing import Any

from detectors.config import DetectorConfig
from detectors.model import SEVERITY_RANK, GeoInfo
from detectors.record import ESTABLISHED_DAYS, VERSION, ProfileRecord, decode, encode

MAX_COUNTRIES = 8
MAX_PLACES = 8
MAX_ASNS = 8
MAX_AGENTS = 4
MAX_HOUR_NEW = 8  # network.spread is critical at 8
NET_BITS = 128  # bits of the per-hour sketch of client networks (network.fanout)
NET_CLASSES = ("hosting", "isp", "tor", "vpn")  # geoip.netclass.CLASSES, sorted
MAX_PATHS = 8  # endpoints whose share is kept; one slot (OTHER_PATH) is every other endpoint
OTHER_PATH = 0  # the id of "every other endpoint"; a name's id is never 0
_PATHS_HALVE_AT = 60000  # closed-hour counts are halved when one passes this: old use fades
RING = 16  # per-minute slots kept: the 5-minute window and duty cycles of up to 15 minutes
_ZERO_RING = (0,) * RING
KNOWN_BYTES = 64  # 512-bit hashed set of established entries
# 1970-01-01 was a Thursday: shift absolute hours so that Monday 00:00 UTC is bucket 0.
_WEEK_OFFSET_H = 72
_Q = 1800.0  # log-quantization steps per e-fold
_UNKNOWN = -1.0
_VOLUME = "usage.spike"
_FANOUT = "network.fanout"
_ENDPOINT_SHIFT = "usage.endpoint_shift"
_THROTTLE_RANK = 30  # incidents.rank of a "high" decision: an escalated incident is not learned
UNSEEN, SEEN, ESTABLISHED = 0, 1, 2
_SEVERITY_NAMES = {rank: name for name, rank in SEVERITY_RANK.items()}


@lru_cache(maxsize=1 << 14)
def network_slot(network: str) -> tuple[int, int]:
    """The sketch byte and bit mask of a client network."""
    bit = zlib.crc32(network.encode()) % NET_BITS
    return bit >> 3, 1 << (bit & 7)


def _linear_count(bits: int) -> int:
    # ref: Whang, Vander-Zanden, Taylor, "A linear-time probabilistic counting algorithm for
    # database applications" (1990): n ~ -m ln(V), V the fraction of bits still zero.
    if bits >= NET_BITS:
        return 4 * NET_BITS  # saturated: far beyond any limit the sketch is used for
    return round(-NET_BITS * math.log((NET_BITS - bits) / NET_BITS))


# Bits set -> distinct networks; one spare entry, so DISTINCT[bits + 1] never fails.
DISTINCT = tuple(_linear_count(min(b, NET_BITS)) for b in range(NET_BITS + 2))


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


def _resize_ring(old: list[int], minute: int) -> list[int]:
    """A ring of another size (version 1 kept 8 minutes) re-indexed to ``RING`` slots."""
    ring = [0] * RING
    if minute >= 0:
        for m in range(minute - min(len(old), RING) + 1, minute + 1):
            ring[m % RING] = old[m % len(old)]
    return ring


_ALL_HOURS = (1 << 24) - 1


def _usual_mask(active: int, tol: int) -> int:
    """Hours of day within ``tol`` hours (circularly) of an active one, as a 24-bit mask."""
    mask = active
    for k in range(1, min(tol, 12) + 1):
        mask |= ((active << k) | (active >> (24 - k))) & _ALL_HOURS  # d-k was active
        mask |= ((active >> k) | (active << (24 - k))) & _ALL_HOURS  # d+k was active
    return mask


def endpoint_key(name: str) -> int:
    """The id of an endpoint name in ``KeyProfile.paths``: 16 bits of its CRC-32, never 0."""
    return (zlib.crc32(name.encode()) & 0xFFFF) or 1


def _pack_paths(paths: dict[int, list[int]]) -> bytes:
    """Endpoint ids and counts as unsigned 16-bit triples (counts saturate at 65535)."""
    flat = array("H")
    for k, (past, now) in paths.items():
        flat.extend((k, min(past, 65535), min(now, 65535)))
    return flat.tobytes()


def _unpack_paths(raw: bytes) -> dict[int, list[int]]:
    flat = array("H")
    flat.frombytes(raw[: len(raw) - len(raw) % 6])
    return {flat[i]: [flat[i + 1], flat[i + 2]] for i in range(0, len(flat), 3)}


def _bits(name: str) -> tuple[int, int]:
    h = zlib.crc32(name.encode())
    return h % (KNOWN_BYTES * 8), (h >> 16) % (KNOWN_BYTES * 8)


def _evict(table: dict[Any, list[Any]], cap: int, days_at: int) -> None:
    """Drop the least established entries (fewest days, fewest uses, oldest) until one fits."""
    while len(table) >= cap:
        victim = min(table, key=lambda k: (table[k][days_at], table[k][0], table[k][1]))
        del table[victim]


def _severity_name(stored: str | int) -> str:
    """An incident's severity as stored: its rank, or (older records) its name."""
    return stored if isinstance(stored, str) else _SEVERITY_NAMES[stored]


class Incident:
    """An open incident: one per key and signal type while evidence keeps coming."""

    __slots__ = (
        "alert_id", "alert_rank", "count", "last_seen", "nets", "note", "opened", "severity",
    )  # fmt: skip

    def __init__(
        self,
        severity: str,
        opened: float,
        last_seen: float,
        count: int = 1,
        alert_id: str = "",
        alert_rank: int = 0,
        note: str = "",
        nets: int = 0,
    ) -> None:
        self.severity = severity
        self.opened = opened
        self.last_seen = last_seen
        self.count = count
        self.alert_id = alert_id
        self.alert_rank = alert_rank
        self.note = note  # the summary phrase of its first evidence, for later alerts
        # A 64-bit sketch of the client networks of its evidence (auth.revoked_in_use only;
        # serialized only when set, so other incidents keep their size).
        self.nets = nets

    def to_list(self) -> list[Any]:
        """Compact serialized form."""
        out: list[Any] = [
            SEVERITY_RANK[self.severity],  # a rank (1 byte); the name in records before v2.1
            round(self.opened),
            round(self.last_seen),
            self.count,
            self.alert_id,
            self.alert_rank,
            self.note,
        ]
        if self.nets:
            out.append(self.nets)
        return out


class KeyProfile:
    """Everything keywatch remembers about one key (see the module docstring)."""

    __slots__ = (
        "agents",
        "asns",
        "base5",
        "countries",
        "cur_count",
        "cur_hour",
        "est_countries",
        "est_places",
        "first_ts",
        "held",
        "hod",
        "hour_max1",
        "hour_max5",
        "hour_nets",
        "hour_new",
        "hour_slots",
        "how",
        "incidents",
        "known",
        "last_net",
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
        "net_bits",
        "net_peak",
        "paths",
        "peaks",
        "places",
        "ring",
        "ring_minute",
        "t1",
        "t5",
        "t60",
        "t_level",
        "tb",
        "total_events",
        "usual_hours",
        "vol_hit",
    )

    def __init__(self) -> None:
        self.first_ts = -1.0
        self.last_ts = -1.0
        self.learn_start = -1.0
        self.learned = False
        self.total_events = 0
        self.countries: dict[str, list[int]] = {}  # cc -> [count, last_seen_s, days]
        self.places: dict[str, list[Any]] = {}  # "CC/City" -> [count, last_s, lat, lon, days]
        self.asns: dict[int, list[int]] = {}  # asn -> [count, last_seen_s, days]
        self.agents: dict[str, list[int]] = {}  # user-agent family -> [last_seen_day, days]
        self.hour_nets = bytearray(NET_BITS // 8)  # sketch of this hour's client networks
        self.net_peak = 0.0
        # Derived (not serialized): bits set in the sketch; the network last counted.
        self.net_bits = 0
        self.last_net: str | None = None
        self.known = bytearray(KNOWN_BYTES)
        self.est_countries = 0
        self.est_places = 0
        self.hour_new: list[str] = []
        self.how: list[float] = [_UNKNOWN] * 168
        self.hod: list[float] = [_UNKNOWN] * 24
        self.level = 0.0
        self.hour_slots: list[int] = [0] * 24
        self.cur_hour = -1
        self.cur_count = 0
        self.ring: list[int] = [0] * RING
        self.ring_minute = -1
        self.peaks: list[float] = [0.0, 0.0, 0.0]
        self.held: list[float] = [0.0, 0.0, 0.0]  # volume seen during an open volume incident
        self.hour_max1 = 0
        self.hour_max5 = 0
        self.loc_ts = -1.0
        self.loc_lat = 0.0
        self.loc_lon = 0.0
        self.loc_acc = 0.0
        self.loc_country = ""
        self.loc_key = ""
        self.incidents: dict[str, Incident] = {}
        self.paths: dict[int, list[int]] = {}  # endpoint id -> [closed hours' count, this hour's]
        # Derived (not serialized): sum of the 4 minutes before the current one, the volume
        # thresholds (per minute, per 5 minutes, per hour, per hour from a new place, per minute
        # an order of magnitude over the key's busiest) and the usual-hours mask.
        self.base5 = 0
        self.t1 = self.t5 = self.t60 = self.t_level = self.tb = 1 << 30
        self.vol_hit = False  # the last counted event made a volume window cross
        self.usual_hours = _ALL_HOURS

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
            # One more event in this minute and hour (``_count``, inlined: the hot path).
            ring, slot = self.ring, minute % RING
            c = ring[slot] = ring[slot] + 1
            h = self.cur_count = self.cur_count + 1
            self.vol_hit = (
                c == self.t1
                or c + self.base5 == self.t5
                or h == self.t60
                or c == self.tb
                or (h >= self.t_level and not (h - self.t_level) & 7)
            )
            return False
        self.vol_hit = False
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
            self._advance_minute(minute, ts, cfg)
        self._count(minute % RING)
        return False

    def _count(self, slot: int) -> None:
        """One more event in this minute and hour; note whether a volume window just crossed."""
        ring = self.ring
        c = ring[slot] = ring[slot] + 1
        h = self.cur_count = self.cur_count + 1
        # The typical-hour test is retried every 8th event past its threshold: it applies only
        # to events from a new place, and the crossing event may be the owner's own.
        self.vol_hit = (
            c == self.t1
            or c + self.base5 == self.t5
            or h == self.t60
            or c == self.tb
            or (h >= self.t_level and not (h - self.t_level) & 7)
        )

    def _advance_minute(self, minute: int, ts: float, cfg: DetectorConfig) -> None:
        ring = self.ring
        prev = self.ring_minute
        if prev >= 0 and prev // 60 == self.cur_hour:  # close the minute: this hour's maxima
            last = ring[prev % RING]
            five = (last + ring[(prev - 1) % RING] + ring[(prev - 2) % RING]
                    + ring[(prev - 3) % RING] + ring[(prev - 4) % RING])  # fmt: skip
            if last > self.hour_max1:
                self.hour_max1 = last
            if five > self.hour_max5:
                self.hour_max5 = five
        hour = minute // 60
        if hour != self.cur_hour:
            self.advance_hour(hour, ts, cfg)
        self.ring_minute = minute
        gap = minute - prev
        if prev < 0 or gap >= RING:  # idle for the whole ring (the common case of a quiet key)
            ring[:] = _ZERO_RING
            self.base5 = 0
            return
        for m in range(prev + 1, minute + 1):
            ring[m % RING] = 0
        if gap >= 5:  # the 4 minutes before this one were all idle
            self.base5 = 0
        else:
            self.base5 = (ring[(minute - 1) % RING] + ring[(minute - 2) % RING]
                          + ring[(minute - 3) % RING] + ring[(minute - 4) % RING])  # fmt: skip

    def advance_hour(self, hour: int, ts: float, cfg: DetectorConfig) -> None:
        """Close the current hour (and learn the empty ones since), then derive thresholds."""
        if self.cur_hour >= 0:
            self._learn_hour(self.cur_hour, self.cur_count, cfg)
            for h in range(self.cur_hour + 1, min(hour, self.cur_hour + 169)):
                self._learn_hour(h, 0, cfg)
            if self.paths:
                self._learn_paths(self.cur_hour)
        self._settle_volume(hour * 3600.0, cfg)
        self._close_networks(cfg)  # before cur_hour moves: it judges the hour that ends
        self.cur_hour = hour
        self.cur_count = 0
        self.hour_max1 = self.hour_max5 = 0
        self.hour_new = []
        span = ts - self.learn_start
        if not self.learned and (
            span >= cfg.learn_max_days * 86400
            or (span >= cfg.learn_min_days * 86400 and self.total_events >= cfg.learn_min_events)
        ):
            self.learned = True
            self._establish_all()
        self._derive(hour, cfg)

    def _establish_all(self) -> None:
        """Learning ends: what the key used while learning is its normal."""
        for c, e in self.countries.items():
            e[2] = max(e[2], ESTABLISHED_DAYS)
            self.est_countries += self._remember("c:" + c)
        for pl, e in self.places.items():
            e[4] = max(e[4], ESTABLISHED_DAYS)
            self.est_places += self._remember("p:" + pl)
        for a, e in self.asns.items():
            e[2] = max(e[2], ESTABLISHED_DAYS)
            self._remember(f"a:{a}")
        for u, e in self.agents.items():
            e[1] = max(e[1], ESTABLISHED_DAYS)
            self._remember("u:" + u)

    def _close_networks(self, cfg: DetectorConfig) -> None:
        """The hour ends: its distinct client networks feed the key's fan-out maximum.

        Not learned from an hour in which a fan-out incident was open, nor while the key is
        under suspicion: an attacker's fleet must not become the key's normal.
        """
        if self.net_bits:
            inc = self.incidents.get(_FANOUT)
            quiet = inc is None or inc.last_seen < self.cur_hour * 3600
            if quiet and not self._under_suspicion():
                n = float(DISTINCT[self.net_bits])
                self.net_peak = max(self.net_peak * cfg.peak_decay, n)
            self.hour_nets = bytearray(NET_BITS // 8)
            self.net_bits = 0
        self.last_net = None

    def count_network(self, network: str) -> None:
        """One more client network seen this hour (a no-op when its bit is set already)."""
        i, mask = network_slot(network)
        nets = self.hour_nets
        if not nets[i] & mask:
            nets[i] |= mask
            self.net_bits += 1

    def hour_has_network(self, network: str) -> bool:
        """Whether the sketch has the bit of ``network`` set (counted, or a collision)."""
        i, mask = network_slot(network)
        return bool(self.hour_nets[i] & mask)

    def _settle_volume(self, now: float, cfg: DetectorConfig) -> None:
        """A volume incident that ended without escalating was normal: learn its volume."""
        inc = self.incidents.get(_VOLUME)
        if inc is None or now - inc.last_seen <= cfg.cooldown_s:
            return
        if inc.alert_rank < _THROTTLE_RANK:
            self.peaks = [max(p, h) for p, h in zip(self.peaks, self.held, strict=True)]
        self.held = [0.0, 0.0, 0.0]
        del self.incidents[_VOLUME]  # expired anyway: incidents.expire would drop it next

    def _volume_frozen(self, start: float) -> bool:
        """A young volume incident touched this hour: its traffic must not raise the baseline.

        After ``volume_adapt_s`` of sustained volume (a launch, a new customer) it is learned.
        """
        inc = self.incidents.get(_VOLUME)
        return inc is not None and inc.last_seen >= start and inc.last_seen - inc.opened < 86400

    def _learn_hour(self, hour: int, n: int, cfg: DetectorConfig) -> None:
        d = hour % 24
        if n > 0:  # hours are learned whatever is open: off-hours is never evidence alone
            self.hour_slots[d] = min(self.hour_slots[d] + 1, 255)  # only "any" and a sum count
        if self._volume_frozen(hour * 3600):
            if n > 0:  # held back until the incident ends without escalation
                hd = self.held
                hd[0] = max(hd[0], float(self.hour_max1))
                hd[1] = max(hd[1], float(self.hour_max5))
                hd[2] = max(hd[2], float(n))
            return
        w = hour_of_week(hour)
        how, hod = self.how, self.hod
        how[w] = n if how[w] < 0 else how[w] + cfg.ewma_week * (n - how[w])
        hod[d] = n if hod[d] < 0 else hod[d] + cfg.ewma_day * (n - hod[d])
        if n > 0:
            # A robust level: one hour moves it as if it were at most 3x the level, so a rare
            # batch hour does not inflate the typical hour (sustained growth still lifts it).
            lv = self.level
            self.level = n if lv <= 0 else lv + cfg.ewma_level * (min(n, 3.0 * lv) - lv)
            # Decaying maxima, decayed per active hour (a quiet weekend does not shrink them).
            pk, decay = self.peaks, cfg.peak_decay
            pk[0] = max(pk[0] * decay, float(self.hour_max1))
            pk[1] = max(pk[1] * decay, float(self.hour_max5))
            pk[2] = max(pk[2] * decay, float(n))

    def count_path(self, endpoint: int) -> None:
        """One request on an endpoint not in the table yet (the analyzer counts the others)."""
        paths = self.paths
        if len(paths) - (OTHER_PATH in paths) >= MAX_PATHS - 1:
            endpoint = OTHER_PATH
        e = paths.get(endpoint)
        if e is None:
            paths[endpoint] = [0, 1]
        else:
            e[1] += 1

    def _learn_paths(self, hour: int) -> None:
        """Close the hour's endpoint counts into the key's mix.

        Not an hour of abnormal volume (a young volume incident or an endpoint shift touched
        it) nor while the key is under suspicion: an attacker's harvest must not become the
        key's mix. A full table
        gives up its least used endpoint (under 1% of the mix) to "*", so an application's new
        endpoints get a slot of their own.
        """
        paths, start = self.paths, hour * 3600
        shift = self.incidents.get(_ENDPOINT_SHIFT)
        if (
            self._volume_frozen(start)
            or (shift is not None and shift.last_seen >= start)
            or self._under_suspicion()
        ):
            for e in paths.values():
                e[1] = 0
            return
        total = most = 0
        for e in paths.values():
            total += e[0] + e[1]
            e[0] += e[1]
            e[1] = 0
            most = max(most, e[0])
        while most > _PATHS_HALVE_AT:
            most //= 2
            for e in paths.values():
                e[0] //= 2
        if len(paths) >= MAX_PATHS and OTHER_PATH in paths:
            least = min((k for k in paths if k != OTHER_PATH), key=lambda k: paths[k][0])
            if paths[least][0] * 100 < total:
                paths[OTHER_PATH][0] += paths.pop(least)[0]

    def _derive(self, hour: int, cfg: DetectorConfig) -> None:
        pk, r = self.peaks, cfg.volume_ratio
        self.t1 = max(math.ceil(r * max(pk[0], cfg.peak_floor[0])), cfg.volume_floor[0])
        self.t5 = max(math.ceil(r * max(pk[1], cfg.peak_floor[1])), cfg.volume_floor[1])
        self.t60 = max(math.ceil(r * max(pk[2], cfg.peak_floor[2])), cfg.volume_floor[2])
        # A minute an order of magnitude over the key's busiest (usage.spike's burst test).
        self.tb = max(math.ceil(cfg.burst_ratio * max(pk[0], cfg.peak_floor[0])), cfg.burst_floor)
        # The typical busy hour (EWMA level), which rare batch hours barely move: traffic from a
        # place the key has not established is judged against it, not against batch peaks.
        self.t_level = max(math.ceil(cfg.level_ratio * self.level), cfg.volume_floor[2])
        slots = self.hour_slots
        if sum(slots) < cfg.off_hours_min_active_slots:
            self.usual_hours = _ALL_HOURS
            return
        active = 0
        for d, n in enumerate(slots):
            if n:
                active |= 1 << d
        self.usual_hours = _usual_mask(active, cfg.off_hours_tolerance_h)

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
        self.peaks = [0.0, 0.0, 0.0]
        self.hour_max1 = self.hour_max5 = 0
        self.loc_ts = -1.0
        self.loc_key = ""
        self.net_peak = 0.0
        self.hour_nets = bytearray(NET_BITS // 8)
        self.net_bits = 0
        self.last_net = None

    # ---- established places, networks, clients ---------------------------------------------

    def _under_suspicion(self) -> bool:
        """An open incident was escalated to a throttle or more (an attacker's third day)."""
        return any(inc.alert_rank >= _THROTTLE_RANK for inc in self.incidents.values())

    def _is_known(self, name: str) -> bool:
        a, b = _bits(name)
        k = self.known
        return bool(k[a >> 3] & (1 << (a & 7)) and k[b >> 3] & (1 << (b & 7)))

    def _remember(self, name: str) -> bool:
        """Put an established entry in the hashed set; False when it was there already."""
        if self._is_known(name):
            return False
        for bit in _bits(name):
            self.known[bit >> 3] |= 1 << (bit & 7)
        return True

    def country_state(self, cc: str) -> int:
        """UNSEEN, SEEN (not yet on enough distinct days) or ESTABLISHED."""
        e = self.countries.get(cc)
        if e is not None and e[2] >= ESTABLISHED_DAYS:
            return ESTABLISHED
        if self._is_known("c:" + cc):
            return ESTABLISHED
        return UNSEEN if e is None else SEEN

    def place_state(self, place: str) -> int:
        """Same for a place ("CC/City")."""
        e = self.places.get(place)
        if e is not None and e[4] >= ESTABLISHED_DAYS:
            return ESTABLISHED
        if self._is_known("p:" + place):
            return ESTABLISHED
        return UNSEEN if e is None else SEEN

    def asn_state(self, asn: int) -> int:
        """Same for a network (ASN)."""
        e = self.asns.get(asn)
        if e is not None and e[2] >= ESTABLISHED_DAYS:
            return ESTABLISHED
        if self._is_known(f"a:{asn}"):
            return ESTABLISHED
        return UNSEEN if e is None else SEEN

    def agent_state(self, family: str) -> int:
        """Same for a user-agent family."""
        e = self.agents.get(family)
        if e is not None and e[1] >= ESTABLISHED_DAYS:
            return ESTABLISHED
        if self._is_known("u:" + family):
            return ESTABLISHED
        return UNSEEN if e is None else SEEN

    def class_state(self, net_class: str) -> int:
        """ESTABLISHED or UNSEEN for a network class (hosting, vpn, tor, isp)."""
        return ESTABLISHED if self._is_known("n:" + net_class) else UNSEEN

    def known_classes(self) -> list[str]:
        """The network classes the key has established (empty: no ASN history)."""
        return [c for c in NET_CLASSES if self._is_known("n:" + c)]

    def established_asns(self) -> int:
        """How many networks (ASNs) in the table are established."""
        return sum(1 for e in self.asns.values() if e[2] >= ESTABLISHED_DAYS)

    def _touch(self, entry: list[Any], its: int, n: int, days_at: int, name: str) -> bool:
        """Count ``n`` uses at ``its``; a new UTC day adds a day. True when newly established."""
        entry[0] += n
        if its // 86400 > entry[1] // 86400:
            entry[1] = its
            if entry[days_at] + 1 >= ESTABLISHED_DAYS and self._under_suspicion():
                return False  # nothing becomes normal while the key is throttled or revoked
            entry[days_at] += 1
            return entry[days_at] == ESTABLISHED_DAYS and self._remember(name)
        entry[1] = max(entry[1], its)
        return False

    def observe_geo(self, ts: float, geo: GeoInfo, place: str, late: bool) -> None:
        """Record where the event came from; late events do not move the last location."""
        its = int(ts)
        c = geo.country
        if c is not None:
            e = self.countries.get(c)
            if e is None:
                _evict(self.countries, MAX_COUNTRIES, 2)
                e = self.countries[c] = [1, its, 1]
            elif its // 86400 == e[1] // 86400:  # same day: the common case, inlined
                e[0] += 1
                if its > e[1]:
                    e[1] = its
            elif self._touch(e, its, 1, 2, "c:" + c):
                self.est_countries += 1
            new = self.hour_new
            # (an evicted but established country is in the hashed set: not new)
            if (
                e[2] < ESTABLISHED_DAYS
                and c not in new
                and len(new) < MAX_HOUR_NEW
                and not self._is_known("c:" + c)
            ):
                new.append(c)
        if geo.asn is not None:
            a = self.asns.get(geo.asn)
            cls = geo.net_class
            if a is None:
                _evict(self.asns, MAX_ASNS, 2)
                self.asns[geo.asn] = [1, its, 1]
                if cls is not None and not self.learned:  # learning: what it uses is normal
                    self._remember("n:" + cls)
            elif its // 86400 == a[1] // 86400:  # same day: the common case, inlined
                a[0] += 1
                if its > a[1]:
                    a[1] = its
            elif self._touch(a, its, 1, 2, f"a:{geo.asn}") and cls is not None:
                self._remember("n:" + cls)  # an established network establishes its class
        net = geo.network
        if net is not self.last_net and net is not None:  # the resolver shares one str per net
            self.last_net = net
            i, mask = network_slot(net)
            nets = self.hour_nets
            if not nets[i] & mask:
                nets[i] |= mask
                self.net_bits += 1
        if geo.lat is None or geo.lon is None:
            return
        p = self.places.get(place)
        if p is None:
            _evict(self.places, MAX_PLACES, 4)
            self.places[place] = [1, its, round(geo.lat, 2), round(geo.lon, 2), 1]
        elif its // 86400 == p[1] // 86400:
            p[0] += 1
            if its > p[1]:
                p[1] = its
        elif self._touch(p, its, 1, 4, "p:" + place):
            self.est_places += 1
        if not late:
            self.loc_ts, self.loc_lat, self.loc_lon = ts, geo.lat, geo.lon
            self.loc_acc = geo.accuracy_km or 0.0
            self.loc_country, self.loc_key = c or "", place

    def add_geo_run(self, geo: GeoInfo, place: str, n: int, last_s: int) -> None:
        """Count ``n`` more events located at ``geo`` (latest at ``last_s``) in one step.

        Same result as ``observe_geo`` per event for events located exactly like one that was
        just observed on the same UTC day (the analyzer ends a run at midnight): their entries
        exist already, so only their counts and last-seen move.
        """
        if geo.country is not None:
            e = self.countries.get(geo.country)
            if e is not None:
                e[0] += n
                e[1] = max(e[1], last_s)
        if geo.asn is not None:
            a = self.asns.get(geo.asn)
            if a is not None:
                a[0] += n
                a[1] = max(a[1], last_s)
        if place:
            p = self.places.get(place)
            if p is not None:
                p[0] += n
                p[1] = max(p[1], last_s)

    def observe_agent(self, ts: float, family: str) -> None:
        """Record the user-agent family of an event (called on a change of agent or day)."""
        day = int(ts) // 86400  # day-granular, so how often it is called does not matter
        e = self.agents.get(family)
        if e is None:
            _evict(self.agents, MAX_AGENTS, 1)
            self.agents[family] = [day, 1]
        elif day > e[0]:
            e[0] = day
            if e[1] + 1 >= ESTABLISHED_DAYS and self._under_suspicion():
                return
            e[1] += 1
            if e[1] == ESTABLISHED_DAYS:
                self._remember("u:" + family)

    def place_count(self, place: str) -> int:
        """How often the key was seen at a place ("CC/City")."""
        p = self.places.get(place)
        return 0 if p is None else int(p[0])

    # ---- feedback ---------------------------------------------------------------------------

    def learn_feedback(self, signal_type: str, evidence: dict[str, Any], ts: float) -> bool:
        """An alert was resolved as benign: make what it was about normal for the key.

        Establishes the country, place, network or user agent in the evidence, marks the hour as
        usual, lifts the volume maxima to the observed rate, or makes the endpoint a common one
        of the key's mix; closes the incident of that type.
        Returns whether anything was learned. Pure: the caller persists the profile.
        """
        its, learned = int(ts), False
        cc, place, asn = evidence.get("country"), evidence.get("place"), evidence.get("asn")
        if isinstance(cc, str) and cc:
            e = self.countries.setdefault(cc, [0, its, 0])
            e[2] = max(e[2], ESTABLISHED_DAYS)
            learned = True
            if self._remember("c:" + cc):
                self.est_countries += 1
        if isinstance(place, str) and place and "/" in place:
            if self._remember("p:" + place):
                self.est_places += 1
            learned = True
        if isinstance(asn, int):
            self._remember(f"a:{asn}")
            learned = True
        agent = evidence.get("agent")
        if isinstance(agent, str) and agent:
            self._remember("u:" + agent)
            learned = True
        net_class = evidence.get("net_class")
        if isinstance(net_class, str) and net_class:
            self._remember("n:" + net_class)
            learned = True
        nets = evidence.get("distinct_networks")
        if isinstance(nets, int) and not isinstance(nets, bool) and nets > 0:
            self.net_peak = max(self.net_peak, float(nets))
            learned = True
        hour = evidence.get("hour_utc")
        if isinstance(hour, int) and 0 <= hour < 24:
            self.hour_slots[hour] = max(self.hour_slots[hour], 1)
            learned = True
        for name, at in (
            ("observed_per_minute", 0),
            ("observed_per_5min", 1),
            ("observed_per_hour", 2),
        ):
            v = evidence.get(name)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                self.peaks[at] = max(self.peaks[at], float(v))
                learned = True
        endpoint = evidence.get("endpoint")
        mixed = self.paths.get(endpoint_key(endpoint)) if isinstance(endpoint, str) else None
        if mixed is not None:  # as common as all the others together
            mixed[0] = max(mixed[0], min(sum(v[0] for v in self.paths.values()), _PATHS_HALVE_AT))
            learned = True
        self.incidents.pop(signal_type, None)
        if learned and self.cur_hour >= 0:
            self._derive(self.cur_hour, _DEFAULT_CFG)
        return learned

    # ---- serialization --------------------------------------------------------------------

    def to_record(self) -> ProfileRecord:
        """The typed record of this profile."""
        loc = None
        if self.loc_ts >= 0:  # coordinates as integer thousandths (msgpack floats take 9 bytes)
            loc = [
                round(self.loc_ts * 1000),
                round(self.loc_lat * 1000),
                round(self.loc_lon * 1000),
                round(self.loc_acc),
                self.loc_country,
                self.loc_key,
            ]
        places = {k: [v[0], v[1], round(v[2] * 100), round(v[3] * 100), v[4]]
                  for k, v in self.places.items()}  # fmt: skip
        return ProfileRecord(
            VERSION,
            round(self.first_ts),
            round(self.last_ts * 1000),
            round(self.learn_start),
            self.learned,
            self.total_events,
            self.countries,
            places,
            self.asns,
            _quantize(self.how),
            _quantize(self.hod),
            round(self.level, 2),
            bytes(self.hour_slots),  # one byte each (two before the endpoint mix was added)
            self.cur_hour,
            self.cur_count,
            self.ring_minute,
            self.ring,
            loc,
            {t: inc.to_list() for t, inc in self.incidents.items()},
            peaks=list(self.peaks),
            hour_max=[self.hour_max1, self.hour_max5],
            known=bytes(self.known),
            spread=[self.est_countries, self.est_places],
            hour_new=self.hour_new,
            agents=self.agents,
            held=list(self.held),
            hour_nets=bytes(self.hour_nets) if self.net_bits else b"",
            net_peak10=round(self.net_peak * 10),
            paths=_pack_paths(self.paths),
        )

    def to_bytes(self) -> bytes:
        """Compact, versioned form (≤ 2 KB for any key)."""
        return encode(self.to_record())

    @classmethod
    def from_bytes(cls, raw: bytes, cfg: DetectorConfig | None = None) -> KeyProfile:
        """Inverse of ``to_bytes`` (version 1 profiles are migrated); ``ValueError`` if corrupt."""
        return cls.from_record(decode(raw), cfg)

    @classmethod
    def from_record(cls, b: ProfileRecord, cfg: DetectorConfig | None = None) -> KeyProfile:
        """A live profile from its record."""
        p = cls()
        p.first_ts, p.last_ts, p.learn_start = (
            float(b.first_ts),
            b.last_ts_ms / 1000.0,
            float(b.learn_start),
        )
        p.learned, p.total_events = b.learned, b.total_events
        p.countries, p.asns, p.agents = b.countries, b.asns, b.agents
        if len(b.hour_nets) == NET_BITS // 8:
            p.hour_nets = bytearray(b.hour_nets)
            p.net_bits = int.from_bytes(b.hour_nets).bit_count()
        p.net_peak = b.net_peak10 / 10.0
        v2 = b.version >= 2 and len(b.known) == KNOWN_BYTES  # v1: float coordinates
        p.places = b.places if not v2 else {
            k: [v[0], v[1], v[2] / 100.0, v[3] / 100.0, v[4]] for k, v in b.places.items()
        }  # fmt: skip
        p.how, p.hod, p.level = _dequantize(b.how), _dequantize(b.hod), b.level
        if len(b.hour_slots) == 24:
            p.hour_slots = list(b.hour_slots)
        else:  # written as 16-bit counts: saturate as they are now
            slots = array("H")
            slots.frombytes(b.hour_slots)
            p.hour_slots = [min(n, 255) for n in slots]
        p.cur_hour, p.cur_count, p.ring_minute = b.cur_hour, b.cur_count, b.ring_minute
        p.ring = b.ring if len(b.ring) == RING else _resize_ring(b.ring, b.ring_minute)  # fmt: skip
        if b.loc is not None:
            ms, lat, lon, p.loc_acc, p.loc_country, p.loc_key = b.loc
            p.loc_ts = ms / 1000.0
            p.loc_lat, p.loc_lon = (lat / 1000.0, lon / 1000.0) if v2 else (lat, lon)
        p.incidents = {t: Incident(_severity_name(v[0]), *v[1:]) for t, v in b.incidents.items()}
        p.hour_new = b.hour_new
        if len(b.peaks) == 3:
            p.peaks = list(b.peaks)
        else:  # migrated v1: the busy-hour level is the best estimate of the busiest hour
            p.peaks = [max(1.0, p.level / 30.0), max(1.0, p.level / 8.0), p.level]
        if len(b.held) == 3:
            p.held = list(b.held)
        p.paths = _unpack_paths(b.paths)
        if len(b.hour_max) == 2:
            p.hour_max1, p.hour_max5 = b.hour_max
        if len(b.known) == KNOWN_BYTES:
            p.known = bytearray(b.known)
            p.est_countries, p.est_places = b.spread
        else:  # migrated v1: what its tables held is established
            p.est_countries = sum(p._remember("c:" + c) for c in p.countries)
            p.est_places = sum(p._remember("p:" + c) for c in p.places)
            for a in p.asns:
                p._remember(f"a:{a}")
        if p.ring_minute >= 0:
            p.base5 = sum(p.ring[(p.ring_minute - k) % RING] for k in range(1, 5))
        if p.cur_hour >= 0:
            p._derive(p.cur_hour, cfg or _DEFAULT_CFG)
        return p


_DEFAULT_CFG = DetectorConfig()

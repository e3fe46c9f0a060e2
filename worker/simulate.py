"""Realistic gateway traffic with labelled attacks, deterministic for a seed (pure: no I/O).

Keys: office keys (weekday local office hours, idle at night), server keys (24x7 with a mild
daily swing) and batch keys (a nightly job). Each key uses one to three sites (a city in a
country) with a few egress IPs each. Benign changes: growth, a new egress IP in a known site,
short bursts (<= 3x). Attacks, on the last two days: ``new_country``, ``spike``, ``off_hours``,
``compromise`` (new country + off-hours + spike) and ``impossible_travel``.

Every IP below was picked by probing the GeoLite2-City database shipped with
``maxminddb-geolite2`` (city-level, accuracy radius <= 50 km); a test checks them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.model import iso
from worker.traffic import EgressSite, dist_km, poisson

ATTACKS = ("new_country", "spike", "off_hours", "compromise", "impossible_travel")
DAY, HOUR = 86400, 3600
DEFAULT_START = 1793577600.0  # 2026-11-02T00:00:00Z, a Monday: the last two of 16 days are weekdays


@dataclass(frozen=True, slots=True)
class Site(EgressSite):
    """A site with a fixed UTC offset (no daylight saving: the classic simulation)."""

    utc_offset: int


HOME_SITES = (
    Site("US", "Raleigh", 35.75, -78.72, "152.7.99", -5),
    Site("US", "San Jose", 37.27, -121.84, "162.194.128", -8),
    Site("DE", "Dresden", 51.05, 13.75, "141.56.228", 1),
    Site("DE", "Bergisch Gladbach", 51.01, 7.11, "217.83.238", 1),
    Site("GB", "London", 51.51, -0.09, "86.181.88", 0),
    Site("GB", "Bristol", 51.45, -2.58, "51.9.171", 0),
    Site("FR", "Paris", 48.89, 2.34, "82.230.180", 1),
    Site("JP", "Tokyo", 35.69, 139.75, "219.196.150", 9),
    Site("BR", "Goiânia", -16.64, -49.26, "201.88.216", -3),
    Site("IN", "Mumbai", 18.98, 72.83, "27.4.16", 5),
    Site("AU", "Sydney", -33.84, 151.21, "32.42.182", 10),
    Site("CA", "Calgary", 51.16, -114.06, "172.219.194", -7),
    Site("NL", "Rotterdam", 51.93, 4.46, "82.156.153", 1),
    Site("SG", "Singapore", 1.29, 103.86, "203.92.116", 8),
    Site("KR", "Seoul", 37.6, 126.98, "121.165.253", 9),
    Site("ZA", "Johannesburg", -26.23, 28.06, "155.234.239", 2),
)
ATTACK_SITES = (
    Site("RU", "Moscow", 55.75, 37.62, "93.175.16", 3),
    Site("RU", "St Petersburg", 59.89, 30.26, "92.100.20", 3),
    Site("CN", "Guangzhou", 23.12, 113.25, "113.67.110", 8),
    Site("NG", "Lagos", 6.45, 3.4, "41.58.65", 1),
    Site("VN", "Hanoi", 21.03, 105.85, "118.70.207", 7),
    Site("UA", "Kiev", 50.45, 30.52, "185.128.234", 2),
    Site("RO", "Bucharest", 44.43, 26.1, "188.26.239", 2),
    Site("ID", "Jakarta", -6.17, 106.83, "139.192.131", 7),
)
_PATHS = ("/v1/users", "/v1/orders", "/v1/payments", "/v1/search", "/v1/items", "/v1/reports")


@dataclass(frozen=True, slots=True)
class AttackLabel:
    """Ground truth: which key was attacked, how, and when (epoch seconds)."""

    key_id: str
    attack: str
    start: float
    end: float


@dataclass(slots=True)
class KeyPlan:
    """How one simulated key behaves."""

    key_id: str
    kind: str  # office | server | batch
    sites: list[Site]
    egress: list[int]  # egress IPs in use per site
    peak: float  # requests per hour at its busiest
    start_h: int = 8
    end_h: int = 18
    growth: float = 0.0  # relative growth over the whole run
    new_ip_at: float | None = None  # from then on, one more egress IP at its first site
    bursts: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, x
    attacks: list[tuple[AttackLabel, Site | None, float]] = field(default_factory=list)


def rate(plan: KeyPlan, t: float, start: float, days: int) -> float:
    """Benign requests per hour of a key at time t (before bursts)."""
    site = plan.sites[0]
    local = t + site.utc_offset * HOUR
    lh = (local % DAY) / HOUR
    dow = int((local // DAY + 3) % 7)  # 0 = Monday (1970-01-01 was a Thursday)
    grow = 1.0 + plan.growth * (t - start) / (days * DAY)
    if plan.kind == "server":
        r = 0.7 + 0.3 * math.cos(2 * math.pi * (lh - 14) / 24)
        return plan.peak * grow * r * (0.8 if dow >= 5 else 1.0)
    if plan.kind == "batch":
        return plan.peak * grow if int(lh) == plan.start_h else 0.0
    if dow >= 5 or not plan.start_h <= lh < plan.end_h:
        return 0.0
    mid = (plan.start_h + plan.end_h) / 2
    return plan.peak * grow * (0.55 + 0.45 * math.cos(math.pi * (lh - mid) / 12))


Row = tuple[float, str, str, str, str, int, str]  # ts, key_id, ip, method, path, status, gateway


@dataclass(slots=True)
class Simulation:
    """A planned run: keys, labelled attacks, and the events they produce (in time order)."""

    keys: list[KeyPlan]
    labels: list[AttackLabel]
    start: float
    days: int
    seed: int

    def rows(self) -> Iterator[Row]:
        """Every event as a compact tuple, in event-time order (hour by hour)."""
        rnd = random.Random(self.seed * 7919 + 1)
        for h in range(self.days * 24):
            t0 = self.start + h * HOUR
            batch: list[Row] = []
            for plan in self.keys:
                _hour_rows(rnd, plan, t0, self.start, self.days, batch)
            batch.sort()
            yield from batch

    def events(self, ts_format: str = "iso") -> Iterator[dict[str, Any]]:
        """Native-format event objects (``ts`` ISO 8601, or epoch ms with ``ts_format="ms"``)."""
        for n, (ts, key_id, ip, method, path, status, gw) in enumerate(self.rows()):
            yield {
                "ts": iso(ts) if ts_format == "iso" else round(ts * 1000),
                "key_id": key_id,
                "ip": ip,
                "method": method,
                "path": path,
                "status": status,
                "user_agent": "kw-sim/1.0",
                "request_id": f"{self.seed:x}-{n:x}",
                "gateway": gw,
            }


def _emit(
    rnd: random.Random,
    plan: KeyPlan,
    a: float,
    b: float,
    per_hour: float,
    out: list[Row],
    site: Site | None,
) -> None:
    """Append Poisson(per_hour) events in [a, b) from the key's sites, or from ``site``."""
    for _ in range(poisson(rnd, per_hour * (b - a) / HOUR)):
        ts = a + rnd.random() * (b - a)
        if site is None:
            si = 0 if len(plan.sites) == 1 or rnd.random() < 0.6 else rnd.randrange(len(plan.sites))
            s = plan.sites[si]
            n = plan.egress[si] + (si == 0 and plan.new_ip_at is not None and ts >= plan.new_ip_at)
            ip = s.ip(rnd.randrange(n))
        else:
            s, ip = site, site.ip(rnd.randrange(3))
        status = 200 if rnd.random() < 0.97 else 404
        method = "GET" if rnd.random() < 0.8 else "POST"
        gw = f"gw-{s.country.lower()}-1"
        out.append((ts, plan.key_id, ip, method, rnd.choice(_PATHS), status, gw))


def _hour_rows(
    rnd: random.Random, plan: KeyPlan, t0: float, start: float, days: int, out: list[Row]
) -> None:
    t1 = t0 + HOUR
    r = rate(plan, t0 + 1, start, days)
    _emit(rnd, plan, t0, t1, r, out, None)
    for bs, be, x in plan.bursts:
        if bs < t1 and be > t0 and r > 0:
            _emit(rnd, plan, max(bs, t0), min(be, t1), r * (x - 1), out, None)
    for label, site, per_hour in plan.attacks:
        if label.start < t1 and label.end > t0:
            a, b = max(label.start, t0), min(label.end, t1)
            _emit(rnd, plan, a, b, per_hour, out, site)


def _plan_key(rnd: random.Random, start: float, days: int) -> KeyPlan:
    kind = rnd.choices(("office", "server", "batch"), (0.6, 0.3, 0.1))[0]
    n_sites = rnd.choices((1, 2, 3), (0.7, 0.25, 0.05))[0]
    sites: list[Site] = []
    for s in rnd.sample(HOME_SITES, len(HOME_SITES)):
        if len(sites) < n_sites and s.country not in {x.country for x in sites}:
            sites.append(s)
    plan = KeyPlan(
        key_id=f"{rnd.getrandbits(32):08x}",
        kind=kind,
        sites=sites,
        egress=[rnd.randint(1, 3) for _ in sites],
        peak=math.exp(rnd.uniform(math.log(4), math.log(300))),
    )
    if kind == "office":
        plan.start_h, plan.end_h = rnd.choice((7, 8, 9)), rnd.choice((17, 18, 19))
    elif kind == "batch":
        plan.start_h, plan.peak = rnd.choice((1, 2, 3, 4)), plan.peak * 5
    if rnd.random() < 0.3:
        plan.growth = rnd.uniform(0.3, 1.0)
    if rnd.random() < 0.3:
        plan.new_ip_at = start + rnd.uniform(3, days - 0.5) * DAY
    for d in range(days):
        if rnd.random() < 0.5:
            bs = start + (d + rnd.random()) * DAY
            plan.bursts.append((bs, bs + rnd.uniform(300, 1200), rnd.uniform(2.0, 3.0)))
    return plan


def _find_time(
    rnd: random.Random,
    plan: KeyPlan,
    lo: float,
    hi: float,
    dur: float,
    active: bool,
    start: float,
    days: int,
) -> float:
    """A start time in [lo, hi - dur) when the key is busy (active) or nowhere near busy."""
    t = lo
    for _ in range(500):
        t = rnd.uniform(lo, hi - dur)
        if active and rate(plan, t, start, days) > 0 and rate(plan, t + dur, start, days) > 0:
            return t
        probes = [t + k * HOUR for k in range(-3, int(dur / HOUR) + 4)]
        if not active and all(rate(plan, p, start, days) == 0 for p in probes):
            return t
    return t


def _travel_site(rnd: random.Random, plan: KeyPlan) -> Site:
    """A site >= 3000 km from every site of the key, in one of its countries when possible."""
    far = [s for s in HOME_SITES + ATTACK_SITES if all(dist_km(s, k) >= 3000 for k in plan.sites)]
    known = {k.country for k in plan.sites}
    same = [s for s in far if s.country in known]
    return rnd.choice(same or far)


def _plan_attack(rnd: random.Random, plan: KeyPlan, attack: str, start: float, days: int) -> None:
    lo, hi = start + (days - 2) * DAY, start + days * DAY - 2 * HOUR
    known = {s.country for s in plan.sites}
    foreign = rnd.choice([s for s in ATTACK_SITES if s.country not in known])
    site: Site | None
    if attack == "spike":
        dur = rnd.uniform(20, 60) * 60
        t = _find_time(rnd, plan, lo, hi, dur, True, start, days)
        per_hour, site = max(rnd.uniform(20, 60) * rate(plan, t, start, days), 900.0), None
    elif attack == "off_hours":
        dur = rnd.uniform(30, 90) * 60
        t = _find_time(rnd, plan, lo, hi, dur, False, start, days)
        per_hour, site = max(plan.peak * rnd.uniform(0.3, 1.0), 20.0), None
    elif attack == "new_country":
        dur = rnd.uniform(30, 120) * 60
        t = _find_time(rnd, plan, lo, hi, dur, True, start, days)
        per_hour, site = max(rate(plan, t, start, days) * rnd.uniform(0.2, 1.0), 10.0), foreign
    elif attack == "compromise":
        dur = rnd.uniform(30, 90) * 60
        t = _find_time(rnd, plan, lo, hi, dur, False, start, days)
        per_hour, site = max(plan.peak * rnd.uniform(20, 60), 900.0), foreign
    elif attack == "impossible_travel":
        dur = rnd.uniform(10, 30) * 60
        t = _find_time(rnd, plan, lo, hi, dur, True, start, days)
        per_hour, site = rnd.uniform(5, 20) * HOUR / dur, _travel_site(rnd, plan)
    else:
        raise ValueError(f"unknown attack {attack!r}; known: {', '.join(ATTACKS)}")
    plan.attacks.append((AttackLabel(plan.key_id, attack, t, t + dur), site, per_hour))


def simulate(
    keys: int = 50,
    days: int = 7,
    attacks: int | Mapping[str, int] = 0,
    seed: int = 0,
    start: float = DEFAULT_START,
) -> Simulation:
    """Plan ``keys`` keys over ``days`` days with attacks (per class: a count, or one count for
    every class) on distinct keys during the last two days."""
    if keys <= 0 or days < 3:
        raise ValueError("need at least one key and three days")
    per_class = attacks if isinstance(attacks, Mapping) else dict.fromkeys(ATTACKS, attacks)
    for name in per_class:
        if name not in ATTACKS:
            raise ValueError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    rnd = random.Random(seed)
    plans = [_plan_key(rnd, start, days) for _ in range(keys)]
    if sum(per_class.values()) > keys:
        raise ValueError("more attacks than keys: each attack needs its own key")
    free = rnd.sample(plans, len(plans))
    labels: list[AttackLabel] = []
    for attack in ATTACKS:  # off-hours classes first need office keys: pick them first
        for _ in range(per_class.get(attack, 0)):
            office = [p for p in free if p.kind == "office"]
            pool = office if attack in ("off_hours", "compromise") and office else free
            plan = pool[0]
            free.remove(plan)
            _plan_attack(rnd, plan, attack, start, days)
            labels.append(plan.attacks[-1][0])
    return Simulation(plans, labels, start, days, seed)

"""Realistic API-key traffic: how keys are really used, and how attackers use stolen ones.

``realistic(keys, days, attacks, seed)`` plans keys of the benign shapes below, overlays attacks on
some of them during the last week, and streams every event in event-time order (each key's events
are generated day by day and merged, so memory stays small). Deterministic for a seed. Local time
comes from each site's IANA zone, so daylight-saving changes happen where they really do (the
default start, 2026-10-19, spans the EU change on Oct 25 and the US change on Nov 1).

Benign shapes: ``office`` (100-1000 requests/day, local hours, bursty), ``human`` (developer
sessions with pagination bursts, some evenings), ``server`` (24x7, heavy-tailed volume),
``ci_fleet`` (runners in 10-40 cities in several countries), ``multi_region``, ``traveller``
(flies at plausible speed, works local hours abroad), ``cron_late`` (a job that sometimes starts a
few minutes late, across the hour), ``launch`` (sustained 5-10x growth), ``weekly`` (first run
after learning), ``monthly``, ``rotation`` (traffic moves to a new key id), ``sparse``.

Attacks (``ATTACKS``): ``low_slow`` (a few requests/hour from a new country), ``same_country_vm``
(a cloud VM in another city of the key's country), ``distributed`` (many IPs in many countries,
low rate each), ``night_scraping`` (50x at local night from a VM), ``classic`` (new country +
off-hours + spike), ``probe_then_attack`` (a few probes days before the attack, same place),
``duty_cycle`` (a flood 2 minutes in every 5 for 3 hours).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from detectors.model import iso
from worker.sitedata import SITE_DATA

DAY, HOUR, MINUTE = 86400.0, 3600.0, 60.0
REALISTIC_START = 1792368000.0  # 2026-10-19T00:00:00Z, a Monday
BENIGN = (
    "office", "human", "server", "ci_fleet", "multi_region", "traveller", "cron_late",
    "launch", "weekly", "monthly", "rotation", "sparse",
)  # fmt: skip
BENIGN_WEIGHTS = (18, 14, 14, 8, 6, 6, 5, 5, 5, 4, 3, 10)
ATTACKS = (
    "low_slow", "same_country_vm", "distributed", "night_scraping", "classic",
    "probe_then_attack", "duty_cycle",
)  # fmt: skip
# Compromise-grade classes must be revoked (the others detected).
COMPROMISE_GRADE = frozenset({"distributed", "night_scraping", "classic", "probe_then_attack"})
SDK_UAS = ("acme-sdk-python/2.3.1", "acme-sdk-node/5.0.2", "acme-cli/1.8.0", "Terraform/1.9.5")
ATTACK_UAS = ("python-requests/2.31.0", "curl/8.5.0", "Go-http-client/1.1", "okhttp/4.12.0")
PATHS = ("/v1/users", "/v1/orders", "/v1/payments", "/v1/search", "/v1/items", "/v1/reports")
# The platform's endpoint catalog. A key's application calls a handful of them, a few far more
# than the others; a harvest (scraping one resource) concentrates on a data endpoint.
ENDPOINTS = (*PATHS, "/v1/customers", "/v1/invoices", "/v1/events", "/v1/files", "/v1/webhooks",
             "/v1/exports")  # fmt: skip
_EXPORTS = ("/v1/exports", "/v1/reports", "/v1/events", "/v1/invoices")
DATA_ENDPOINTS = ("/v1/users", "/v1/orders", "/v1/payments", "/v1/search", "/v1/items",
                  "/v1/customers", "/v1/invoices", "/v1/files")  # fmt: skip
_UNIFORM = (PATHS, tuple((i + 1) / len(PATHS) for i in range(len(PATHS))), "")

Row = tuple[float, str, str, str, str, int, str, str]  # ts, key, ip, method, path, status, gw, ua


@dataclass(frozen=True, slots=True)
class EgressSite:
    """A city with a /24 of egress addresses that geolocate there: what the simulators' sites
    share (``worker.simulate.Site`` adds a fixed UTC offset, :class:`Site` an IANA zone)."""

    country: str
    city: str
    lat: float
    lon: float
    prefix: str

    def ip(self, i: int) -> str:
        """The i-th (0..5) egress address of the site."""
        return f"{self.prefix}.{10 * (i % 6 + 1)}"


@dataclass(frozen=True, slots=True)
class Site(EgressSite):
    """A real-world site (``worker.sitedata``): local time from its IANA zone."""

    tz: str
    role: str


SITES = tuple(
    Site(c, city, lat, lon, prefix, tz, role) for c, city, lat, lon, tz, prefix, role in SITE_DATA
)
HOME = tuple(s for s in SITES if s.role == "home")
AWAY = tuple(s for s in SITES if s.role == "attack")


@lru_cache(maxsize=65536)
def _offset_h(tz: str, abs_hour: int) -> float:
    dt = datetime.fromtimestamp(abs_hour * HOUR, UTC).astimezone(ZoneInfo(tz))
    off = dt.utcoffset()
    return off.total_seconds() / HOUR if off is not None else 0.0


def local(site: Site, t: float) -> tuple[float, int]:
    """(local hour of day as a float, local weekday 0=Monday) at UTC time t."""
    lt = t + _offset_h(site.tz, int(t // HOUR)) * HOUR
    return (lt % DAY) / HOUR, int((lt // DAY + 3) % 7)


def local_time(site: Site, day_start: float, hour: float) -> float:
    """UTC time of local ``hour`` on the local day that starts near ``day_start`` (UTC midnight)."""
    return day_start + (hour - _offset_h(site.tz, int((day_start + 12 * HOUR) // HOUR))) * HOUR


def dist_km(a: EgressSite, b: EgressSite) -> float:
    """Great-circle distance."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(
        math.radians(b.lon - a.lon)
    )
    return 6371.0 * math.acos(max(-1.0, min(1.0, c)))


@dataclass(frozen=True, slots=True)
class Label:
    """Ground truth for one key: its benign shape, and the attack on it if any."""

    key_id: str
    shape: str
    attack: str | None = None
    start: float = 0.0
    end: float = 0.0


Mix = tuple[tuple[str, ...], tuple[float, ...], str]  # endpoints, cumulative weights, job's


def endpoint_mix(seed: int) -> Mix:
    """A key's endpoints (2-7 of the catalog) with Zipf weights: its application's own calls.

    Also what its scheduled jobs, if it has any, page through: the application's usual calls at
    volume (a backfill: ""), its busiest endpoint (syncing its orders), or an export endpoint
    its daily traffic may never call.
    """
    r = random.Random(seed ^ 0x5EED1E55)
    paths = tuple(r.sample(ENDPOINTS, r.randint(2, 7)))
    w = [1.0 / (i + 1) ** 1.1 for i in range(len(paths))]
    total, acc, cum = sum(w), 0.0, []
    for x in w:
        acc += x / total
        cum.append(acc)
    u = r.random()
    job = "" if u < 0.4 else paths[0] if u < 0.75 else r.choice(_EXPORTS)
    return paths, tuple(cum), job


@dataclass(slots=True)
class Emitter:
    """Collects one key's events for one day (the generator sorts them)."""

    key_id: str
    rnd: random.Random
    ua: str
    out: list[Row] = field(default_factory=list)
    mix: Mix = _UNIFORM

    def endpoint(self, focus: str = "") -> str:
        """An endpoint of the key's mix; ``focus`` "job" is its jobs' one, else a literal path."""
        if focus == "job":
            focus = self.mix[2]
        if focus:
            return focus
        paths, cum, _ = self.mix
        return paths[min(bisect.bisect_left(cum, self.rnd.random()), len(paths) - 1)]

    def at(self, ts: float, site: Site, ip_i: int, ua: str | None = None, path: str = "") -> None:
        """One request (on ``path``, else an endpoint of the key's mix; some name a record)."""
        r = self.rnd.random()
        status = 200 if r < 0.96 else (404 if r < 0.99 else 500)
        method = "GET" if r < 0.8 or r >= 0.96 else "POST"
        gw = f"gw-{site.country.lower()}-1"
        p = path or self.endpoint()
        if r < 0.3:  # GET /v1/users/4711
            p = f"{p}/{int(r * 33333)}"
        self.out.append((ts, self.key_id, site.ip(ip_i), method, p, status, gw, ua or self.ua))

    def poisson(
        self,
        a: float,
        b: float,
        per_hour: float,
        site: Site,
        ips: int,
        ua: str | None = None,
        focus: str = "",
        share: float = 0.95,
    ) -> None:
        """Poisson arrivals in [a, b) at ``per_hour``; with ``focus``, ``share`` of them on it.

        A job pages through one endpoint (``focus``: a path, or "job" for the key's jobs'
        endpoint, see ``endpoint_mix``); the rest of its requests are the application's usual
        calls.
        """
        rnd = self.rnd
        for _ in range(poisson(rnd, per_hour * (b - a) / HOUR)):
            path = self.endpoint(focus) if focus and rnd.random() < share else ""
            self.at(a + rnd.random() * (b - a), site, rnd.randrange(ips), ua, path)

    def bursty(self, a: float, b: float, per_hour: float, site: Site, ips: int) -> None:
        """Clustered arrivals (page loads, paginations): bursts of 1-60 requests within seconds."""
        rnd = self.rnd
        total = poisson(rnd, per_hour * (b - a) / HOUR)
        while total > 0:
            size = min(total, max(1, int(rnd.paretovariate(1.3))))
            t0 = a + rnd.random() * (b - a)
            ip = rnd.randrange(ips)
            for _ in range(size):
                self.at(min(b - 0.001, t0 + rnd.random() * (2.0 + size)), site, ip)
            total -= size


def poisson(rnd: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation above 40)."""
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rnd.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


DayFn = Callable[[Emitter, int, float], None]  # emitter, day index, day start (UTC midnight)


@dataclass(slots=True)
class KeyPlan:
    """One key: a shape's day generator plus attack day generators."""

    key_id: str
    shape: str
    seed: int
    day: DayFn
    home: list[Site]
    ua: str
    first_day: int = 0
    last_day: int = 10**6
    overlays: list[DayFn] = field(default_factory=list)
    label: Label | None = None
    mix_seed: int = -1  # whose endpoint mix (a rotated key keeps its application's); -1: seed

    def stream(self, start: float, days: int) -> Iterator[Row]:
        """This key's events in time order, day by day."""
        rnd = random.Random(self.seed)
        # A day's local hours spill up to ~14 h into the UTC days around it: hold rows back
        # until no later day can emit anything earlier.
        held: list[Row] = []
        mix = endpoint_mix(self.seed if self.mix_seed < 0 else self.mix_seed)
        for d in range(max(0, self.first_day), min(days, self.last_day)):
            em = Emitter(self.key_id, rnd, self.ua, mix=mix)
            t0 = start + d * DAY
            self.day(em, d, t0)
            for fn in self.overlays:
                fn(em, d, t0)
            for row in em.out:
                heapq.heappush(held, row)
            while held and held[0][0] < t0 - DAY:
                yield heapq.heappop(held)
        while held:
            yield heapq.heappop(held)


@dataclass(slots=True)
class Traffic:
    """A planned run: keys with ground truth, and their events merged in time order."""

    plans: list[KeyPlan]
    start: float
    days: int
    seed: int

    @property
    def labels(self) -> list[Label]:
        """Ground truth, one label per key."""
        return [p.label or Label(p.key_id, p.shape) for p in self.plans]

    def rows(self) -> Iterator[Row]:
        """Every event, in event-time order (within a key and across keys)."""
        return heapq.merge(*(p.stream(self.start, self.days) for p in self.plans))

    def events(self, ts_format: str = "iso") -> Iterator[dict[str, Any]]:
        """Native-format event objects."""
        for n, (ts, key_id, ip, method, path, status, gw, ua) in enumerate(self.rows()):
            yield {
                "ts": iso(ts) if ts_format == "iso" else round(ts * 1000),
                "key_id": key_id, "ip": ip, "method": method, "path": path, "status": status,
                "user_agent": ua, "request_id": f"{self.seed:x}-{n:x}", "gateway": gw,
            }  # fmt: skip


def realistic(
    keys: int = 300,
    days: int = 21,
    attacks: int = 10,
    seed: int = 0,
    start: float = REALISTIC_START,
) -> Traffic:
    """Plan ``keys`` keys (``attacks`` of them per attack class attacked in the last week)."""
    from worker import shapes  # the shape library imports this module's types

    if days < 14 or keys < attacks * len(ATTACKS) + 1:
        raise ValueError("need >= 14 days and more keys than attacked keys")
    rnd = random.Random(seed)
    plans: list[KeyPlan] = []
    while len(plans) < keys:
        shape = rnd.choices(BENIGN, BENIGN_WEIGHTS)[0]
        plans.extend(shapes.plan(shape, rnd, days))
    plans = plans[:keys]
    victims = [p for p in plans if p.shape in shapes.ATTACKABLE]
    rnd.shuffle(victims)
    for attack in ATTACKS:
        for _ in range(attacks):
            pool = [p for p in victims if shapes.suits(attack, p)]
            if not pool:
                raise ValueError(f"no key suits attack {attack}")
            victim = pool[0]
            victims.remove(victim)
            shapes.attack(attack, victim, rnd, start, days)
    return Traffic(plans, start, days, seed)

"""Held-out traffic for ``eval_quality.py``: written apart from ``worker.traffic``, never tuned on.

Different code path and distributions on purpose: every key is a list of *components*, each an
intensity function evaluated per 10-minute slot and sampled as a gamma-mixed (overdispersed)
Poisson count, with events clustered around a few slot-level "bursts". Spring season (the US
changes clocks on 2027-03-14, the EU on 03-28), another shape mix, other parameters for the
attacks (slower low-and-slow, wider distributed abuse, a 3-in-10-minute duty cycle, a single
probe day). Same row and label types as ``worker.traffic`` so the scorer is shared.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.traffic import (
    ATTACK_UAS,
    AWAY,
    DAY,
    ENDPOINTS,
    HOME,
    HOUR,
    Label,
    Row,
    Site,
    dist_km,
    local,
)  # fmt: skip

START = 1804464000.0  # 2027-03-08T00:00:00Z, a Monday
SLOT = 600.0
# start, end, per hour, site, user agent, focus endpoint ("" or "!top"), share of requests on it
Segment = tuple[float, float, float, Site, str, str, float]
Component = Callable[[float, random.Random], list[Segment]]


@dataclass(slots=True)
class HeldKey:
    """One key: components summed; an optional attack label."""

    key_id: str
    shape: str
    seed: int
    parts: list[Component] = field(default_factory=list)
    label: Label | None = None
    home: Site | None = None
    ua: str = "acme-go/0.9"
    mix: list[tuple[str, float]] = field(default_factory=list)  # endpoint, weight (sum 1)

    def stream(self, start: float, days: int) -> Iterator[Row]:
        """Events in time order."""
        rnd = random.Random(self.seed)
        held: list[Row] = []
        t = start
        while t < start + days * DAY:
            for comp in self.parts:
                for seg in comp(t, rnd):
                    _sample(rnd, self.key_id, seg, self.mix, held)
            t += SLOT
            while held and held[0][0] < t - SLOT:
                yield heapq.heappop(held)
        while held:
            yield heapq.heappop(held)


def _mix(rnd: random.Random) -> list[tuple[str, float]]:
    """Endpoints an application calls: a Dirichlet(0.6) share over 1-8 of the catalog."""
    picked = rnd.sample(ENDPOINTS, min(8, 1 + int(rnd.expovariate(1 / 2.5))))
    w = [rnd.gammavariate(0.6, 1.0) + 1e-9 for _ in picked]
    total = sum(w)
    return sorted(((p, x / total) for p, x in zip(picked, w, strict=True)), key=lambda e: -e[1])


def _path(rnd: random.Random, mix: list[tuple[str, float]], focus: str, share: float) -> str:
    if focus and rnd.random() < share:
        return mix[0][0] if focus == "!top" and mix else focus
    u = rnd.random()
    for p, w in mix:
        u -= w
        if u <= 0:
            return p
    return mix[-1][0] if mix else "/v1/items"


def _sample(
    rnd: random.Random, key: str, seg: Segment, mix: list[tuple[str, float]], out: list[Row]
) -> None:
    a, b, per_hour, site, ua, focus, share = seg
    mean = per_hour * (b - a) / HOUR
    if mean <= 0:
        return
    if b - a < 0.01:  # a marker: exactly one request (an attack's first)
        n = 1
    else:
        lam = rnd.gammavariate(2.0, mean / 2.0) if mean < 500 else mean  # overdispersed
        n = _pois(rnd, lam)
    centres = [a + rnd.random() * (b - a) for _ in range(max(1, n // 25))]
    for _ in range(n):
        c = rnd.choice(centres)
        ts = min(b - 1e-3, max(a, c + rnd.gauss(0, 20)))
        path = _path(rnd, mix, focus, share)
        path += "" if rnd.random() < 0.7 else "/" + str(rnd.randrange(999))
        status = 200 if rnd.random() < 0.95 else rnd.choice((400, 404, 429, 500))
        row = (ts, key, site.ip(rnd.randrange(6)), "GET", path, status, "gw-h", ua)
        heapq.heappush(out, row)


def _pois(rnd: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, round(rnd.gauss(lam, math.sqrt(lam))))
    k, p, lim = 0, rnd.random(), math.exp(-lam)
    while p > lim:
        k, p = k + 1, p * rnd.random()
    return k


def _office_curve(site: Site, t: float, lo: float, hi: float) -> float:
    lh, dow = local(site, t)
    if dow >= 5 or not lo <= lh < hi:
        return 0.0
    return math.sin(math.pi * (lh - lo) / (hi - lo)) ** 0.5


def office(rnd: random.Random, per_day: float, site: Site, ua: str) -> Component:
    """Weekday office hours, sine-shaped."""
    lo, hi = rnd.uniform(6.5, 10), rnd.uniform(15.5, 20)
    scale = per_day / ((hi - lo) * 0.85)
    return lambda t, r: [(t, t + SLOT, scale * _office_curve(site, t, lo, hi), site, ua, "", 0.0)]


def always(rnd: random.Random, per_hour: float, site: Site, ua: str, growth: float = 1.0,
           at: float = 0.0) -> Component:  # fmt: skip
    """24x7 with a local daily swing; optional step growth at ``at`` (over 36 h)."""

    def comp(t: float, r: random.Random) -> list[Segment]:
        lh, _ = local(site, t)
        g = 1.0 + (growth - 1.0) * min(1.0, max(0.0, (t - at) / (36 * HOUR))) if at else 1.0
        rate = per_hour * g * (0.6 + 0.4 * math.sin(math.pi * lh / 24))
        return [(t, t + SLOT, rate, site, ua, "", 0.0)]

    return comp


def job(hour_utc: float, per_run: float, site: Site, ua: str, every_days: int = 1,
        first: float = 0.0, late_p: float = 0.0, focus: str = "") -> Component:  # fmt: skip
    """A scheduled job (every N days from ``first``), sometimes late, mostly on ``focus``."""

    def comp(t: float, r: random.Random) -> list[Segment]:
        day = math.floor(t / DAY)
        if t < first or day % every_days:
            return []
        s = day * DAY + hour_utc * HOUR
        if s <= t < s + SLOT and r.random() < late_p:
            s += r.uniform(120, 500)
        dur = 900.0
        a, b = max(s, t), min(s + dur, t + SLOT)
        return [(a, b, per_run * HOUR / dur, site, ua, focus, 0.9)] if a < b else []

    return comp


def _focus(rnd: random.Random) -> str:
    """What a job pages through: the app's own calls, its top endpoint, or any endpoint."""
    u = rnd.random()
    return "" if u < 0.45 else "!top" if u < 0.75 else rnd.choice(ENDPOINTS)


def _key(rnd: random.Random, shape: str) -> HeldKey:
    home = rnd.choice(HOME)
    k = HeldKey(f"h{rnd.getrandbits(28):07x}", shape, rnd.getrandbits(31), home=home)
    k.mix = _mix(random.Random(k.seed + 1))  # own draws: the key plan stays as it was
    jobs = random.Random(k.seed + 2)
    vol = rnd.lognormvariate(math.log(12), 1.0)
    if shape == "office":
        k.parts.append(office(rnd, min(1000, max(100, vol * 15)), home, k.ua))
    elif shape == "server":
        k.parts.append(always(rnd, min(250, vol), home, k.ua))
    elif shape == "ci_fleet":
        cc = rnd.sample(sorted({s.country for s in HOME}), rnd.randint(4, 7))
        fleet = [s for s in HOME if s.country in cc][: rnd.randint(20, 40)]
        runs = rnd.randint(4, 20)

        def ci(t: float, r: random.Random) -> list[Segment]:
            if not _office_curve(fleet[0], t, 7, 21) or r.random() > runs / 84:
                return []
            a = t + r.random() * 300
            rate, site = r.uniform(600, 3000), r.choice(fleet)
            return [(a, a + 240, rate, site, "gitlab-runner 16.8", "", 0.0)]

        k.parts.append(ci)
    elif shape == "multi_region":
        for c in rnd.sample(sorted({s.country for s in HOME}), rnd.randint(2, 5)):
            site = rnd.choice([s for s in HOME if s.country == c])
            k.parts.append(always(rnd, min(120, vol), site, k.ua))
    elif shape == "traveller":
        dest = rnd.choice([s for s in HOME if dist_km(s, home) > 2000])
        go = START + rnd.randint(10, 15) * DAY + 9 * HOUR
        ret = go + rnd.randint(2, 5) * DAY
        per_day = min(600, max(60, vol * 8))
        at_home, away = office(rnd, per_day, home, k.ua), office(rnd, per_day, dest, k.ua)
        fly = (dist_km(home, dest) / 850 + 4) * HOUR

        def trip(t: float, r: random.Random) -> list[Segment]:
            if go <= t < ret + fly:
                return away(t, r) if go + fly <= t < ret else []
            return at_home(t, r)

        k.parts.append(trip)
    elif shape == "cron_late":
        k.parts.append(job(rnd.randint(0, 23) + 58 / 60, vol * 40, home, "cron", late_p=0.4,
                           focus=_focus(jobs)))  # fmt: skip
    elif shape == "launch":
        k.parts.append(always(rnd, min(25, vol), home, k.ua, rnd.uniform(5, 10),
                              START + rnd.uniform(10, 17) * DAY))  # fmt: skip
    elif shape == "weekly":
        k.parts.append(office(rnd, 200, home, k.ua))
        k.parts.append(job(rnd.uniform(0, 6), rnd.uniform(2000, 15000), home, k.ua, 7,
                           START + 9 * DAY, focus=_focus(jobs)))  # fmt: skip
    elif shape == "monthly":
        k.parts.append(always(rnd, min(100, vol), home, k.ua))
        k.parts.append(job(3.0, rnd.uniform(8000, 25000), home, k.ua, 30, START + 5 * DAY,
                           focus=_focus(jobs)))  # fmt: skip
    elif shape == "sparse":
        k.parts.append(office(rnd, rnd.uniform(2, 6), home, "curl/8.1.2"))
        k.parts.append(job(rnd.uniform(8, 16), rnd.uniform(50, 300), home, "curl/8.1.2", 7,
                           focus=_focus(jobs)))  # fmt: skip
    return k


SHAPES = ("office", "server", "ci_fleet", "multi_region", "traveller", "cron_late", "launch",
          "weekly", "monthly", "sparse")  # fmt: skip
WEIGHTS = (25, 18, 10, 8, 8, 6, 6, 6, 4, 9)


def _attack(k: HeldKey, name: str, rnd: random.Random, days: int) -> None:
    home = k.home or HOME[0]
    ua = rnd.choice(ATTACK_UAS)
    day0 = START + rnd.randint(days - 8, days - 4) * DAY  # ends inside the data (3-day attacks)
    while local(home, day0 + 12 * HOUR)[1] >= 5:
        day0 -= DAY
    work = day0 + (12 - local(home, day0 + 12 * HOUR)[0] + 12) % 24 * HOUR  # local noon
    night = work - rnd.uniform(8.5, 10.5) * HOUR
    foreign = rnd.choice([s for s in AWAY if s.country != home.country])
    vm = rnd.choice([s for s in HOME if s.country == home.country and s != home])
    sites, rate = [foreign], 600.0
    if name == "low_slow":
        a, b, rate = work, work + 3 * DAY, rnd.uniform(0.5, 2)
    elif name == "same_country_vm":
        a, b, rate, sites = work, work + DAY, rnd.uniform(150, 400), [vm]
    elif name == "distributed":
        a, b = work, work + rnd.uniform(3, 8) * HOUR
        sites = rnd.sample([s for s in AWAY + HOME if s.country != home.country], 40)
        rate = rnd.uniform(800, 2000)
    elif name == "night_scraping":
        a, b, rate, sites = night, night + 2 * HOUR, 50 * 60.0, [rnd.choice((vm, foreign))]
    elif name == "classic":
        a, b, rate = night, night + HOUR, rnd.uniform(1500, 4000)
    elif name == "probe_then_attack":
        p = work - rnd.randint(3, 8) * DAY
        k.parts.append(_window(p, p + 300, 60.0, [foreign], ua))
        a, b, rate = work, work + HOUR, rnd.uniform(800, 2500)
    elif name == "duty_cycle":
        a, b, per_min = work, work + rnd.uniform(2, 4) * HOUR, rnd.uniform(200, 500)
        harvest = random.Random(k.seed + 3)  # what it harvests
        target, share = harvest.choice(ENDPOINTS), harvest.uniform(0.7, 1.0)

        def duty(t: float, r: random.Random) -> list[Segment]:
            out: list[Segment] = []
            for m in range(int(SLOT // 60)):
                s = t + m * 60
                if a <= s < b and int((s - a) // 60) % 10 < 3:
                    out.append((s, s + 60, per_min * 60, home, k.ua, target, share))
            return out

        k.parts.append(duty)
        k.parts.append(_window(a, a + 1, 3600.0, [home], k.ua))
        k.label = Label(k.key_id, k.shape, name, a, b)
        return
    k.parts.append(_window(a, b, rate, sites, ua))
    k.label = Label(k.key_id, k.shape, name, a, b)


def _window(a: float, b: float, per_hour: float, sites: list[Site], ua: str) -> Component:
    """Traffic in [a, b) spread over ``sites``; the first request exactly at ``a``."""

    def comp(t: float, r: random.Random) -> list[Segment]:
        lo, hi = max(a, t), min(b, t + SLOT)
        if lo >= hi:
            return []
        segs = [(lo, hi, per_hour / len(sites), s, ua, "", 0.0) for s in sites]
        if lo == a:  # exactly one at a, on average
            segs.append((a, a + 1e-3, HOUR / 1e-3, sites[0], ua, "", 0.0))
        return segs

    return comp


@dataclass(slots=True)
class HeldOut:
    """Keys, labels, merged rows."""

    keys: list[HeldKey]
    days: int

    @property
    def labels(self) -> list[Label]:
        """Ground truth per key."""
        return [k.label or Label(k.key_id, k.shape) for k in self.keys]

    def rows(self) -> Iterator[Row]:
        """Every event in time order."""
        return heapq.merge(*(k.stream(START, self.days) for k in self.keys))


def heldout(keys: int = 300, days: int = 21, attacks: int = 10, seed: int = 1001) -> HeldOut:
    """The held-out data set."""
    from worker.traffic import ATTACKS

    rnd = random.Random(seed)
    ks = [_key(rnd, rnd.choices(SHAPES, WEIGHTS)[0]) for _ in range(keys)]
    free = [k for k in ks if k.shape in ("office", "server", "multi_region", "weekly")]
    rnd.shuffle(free)
    for name in ATTACKS:
        for _ in range(attacks):
            pool = [k for k in free if name != "distributed" or k.shape != "office"]
            victim = pool[0]
            free.remove(victim)
            _attack(victim, name, rnd, days)
    return HeldOut(ks, days)

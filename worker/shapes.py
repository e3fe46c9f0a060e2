"""The benign key shapes and the attacks of ``worker.traffic``, as day generators.

Every shape is ``plan_<shape>(rnd, days) -> list[KeyPlan]``; a plan's ``day(em, d, t0)`` emits
one UTC day of its events. Attacks add an overlay day generator and a label to a victim plan;
each attack emits its first request exactly at the label's start (time to first alert is
measured from there).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from worker.traffic import (
    ATTACK_UAS,
    AWAY,
    DATA_ENDPOINTS,
    DAY,
    HOME,
    HOUR,
    MINUTE,
    PATHS,
    SDK_UAS,
    DayFn,
    Emitter,
    KeyPlan,
    Label,
    Site,
    dist_km,
    local,
    local_time,
)

ATTACKABLE = frozenset({"office", "human", "server", "multi_region", "weekly"})
_ALWAYS_ON = frozenset({"server", "multi_region"})
_HUMAN = frozenset({"office", "human", "weekly"})


def _kid(rnd: random.Random) -> str:
    return f"{rnd.getrandbits(32):08x}"


def _lognormal(rnd: random.Random, median: float, sigma: float, lo: float, hi: float) -> float:
    return min(hi, max(lo, median * math.exp(rnd.gauss(0.0, sigma))))


def _workday(
    em: Emitter, t0: float, site: Site, ips: int, per_day: float, s: float, e: float
) -> None:
    """Office-hours traffic on local weekdays: a hump with a lunch dip, in bursts."""
    _, dow = local(site, local_time(site, t0, 12.0))
    rnd = em.rnd
    if dow >= 5 and rnd.random() > 0.06:
        return
    if rnd.random() < 0.1:
        e = min(23.0, e + rnd.uniform(1, 4))  # overtime
    span = e - s
    for h in range(int(s), math.ceil(e)):
        w = 1.0 - (0.5 if h == 12 else 0.0)
        a = local_time(site, t0, max(s, h))
        b = local_time(site, t0, min(e, h + 1))
        if b > a:
            em.bursty(a, b, per_day / span * w, site, ips)


def plan_office(rnd: random.Random, days: int) -> list[KeyPlan]:
    """An office key: 100-1000 requests per weekday, local office hours (DST follows the zone)."""
    site, ips = rnd.choice(HOME), rnd.randint(1, 3)
    per_day = _lognormal(rnd, 300, 0.6, 100, 1000)
    s, e = rnd.uniform(7, 9.5), rnd.uniform(16.5, 19)

    def day(em: Emitter, d: int, t0: float) -> None:
        _workday(em, t0, site, ips, per_day * em.rnd.uniform(0.6, 1.4), s, e)

    return [KeyPlan(_kid(rnd), "office", rnd.getrandbits(32), day, [site], rnd.choice(SDK_UAS))]


def _sessions(em: Emitter, t0: float, site: Site, ips: int, rate: float, evening: float) -> None:
    """A developer's day: 1-4 sessions of 10-90 minutes of bursty requests, sometimes evenings."""
    rnd = em.rnd
    _, dow = local(site, local_time(site, t0, 12.0))
    n = rnd.randint(1, 4) if dow < 5 else int(rnd.random() < 0.15)
    for _ in range(n):
        start = local_time(site, t0, rnd.uniform(9, 18.5))
        dur = rnd.uniform(10, 90) * MINUTE
        em.bursty(start, start + dur, rate, site, ips)
    if rnd.random() < evening:
        start = local_time(site, t0, rnd.uniform(19.5, 22.5))
        em.bursty(start, start + rnd.uniform(10, 40) * MINUTE, rate, site, ips)


def plan_human(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A developer's key: bursty sessions (paginations), dynamic home IPs, some evenings."""
    site, ips = rnd.choice(HOME), rnd.randint(1, 4)
    rate, evening = _lognormal(rnd, 80, 0.7, 30, 500), rnd.uniform(0.0, 0.3)

    def day(em: Emitter, d: int, t0: float) -> None:
        _sessions(em, t0, site, ips, rate, evening)

    return [KeyPlan(_kid(rnd), "human", rnd.getrandbits(32), day, [site], rnd.choice(SDK_UAS))]


def _diurnal(site: Site, t: float) -> float:
    lh, dow = local(site, t)
    return (0.55 + 0.45 * math.cos(2 * math.pi * (lh - 14) / 24)) * (0.7 if dow >= 5 else 1.0)


def _server_day(
    em: Emitter, t0: float, sites: list[Site], peak: float, factor: Callable[[float], float]
) -> None:
    for h in range(24):
        a = t0 + h * HOUR
        for site in sites:
            em.bursty(a, a + HOUR, peak * _diurnal(site, a) * factor(a) / len(sites), site, 3)


def plan_server(rnd: random.Random, days: int, shape: str = "server") -> list[KeyPlan]:
    """A backend's key: 24x7 with a daily swing, heavy-tailed volume, one or two sites."""
    sites = [rnd.choice(HOME)]
    if rnd.random() < 0.3:
        sites.append(rnd.choice([s for s in HOME if s.country == sites[0].country]))
    peak = _lognormal(rnd, 30, 1.0, 4, 800)
    growth = 1.0
    if shape == "launch":  # sustained 5-10x growth from a day in the third week, over 1-2 days
        at, ramp, growth = rnd.uniform(11, 16) * DAY, rnd.uniform(1, 2) * DAY, rnd.uniform(5, 10)
        peak = min(peak, 80)

    def day(em: Emitter, d: int, t0: float) -> None:
        def factor(t: float) -> float:
            if growth == 1.0:
                return 1.0
            x = (t - (t0 - d * DAY) - at) / ramp
            return 1.0 + (growth - 1.0) * min(1.0, max(0.0, x))

        _server_day(em, t0, sites, peak, factor)

    return [KeyPlan(_kid(rnd), shape, rnd.getrandbits(32), day, sites, rnd.choice(SDK_UAS))]


def plan_multi_region(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A service deployed in 3-6 regions (countries), each with its own local daily swing."""
    countries = rnd.sample(sorted({s.country for s in HOME}), rnd.randint(3, 6))
    sites = [rnd.choice([s for s in HOME if s.country == c]) for c in countries]
    peak = _lognormal(rnd, 60, 0.8, 15, 600)

    def day(em: Emitter, d: int, t0: float) -> None:
        _server_day(em, t0, sites, peak, lambda _t: 1.0)

    return [KeyPlan(_kid(rnd), "multi_region", rnd.getrandbits(32), day, sites, SDK_UAS[1])]


def plan_ci_fleet(rnd: random.Random, days: int) -> list[KeyPlan]:
    """CI runners in 10-40 cities in 3-6 countries; jobs in the team's hours and one nightly."""
    countries = rnd.sample(sorted({s.country for s in HOME}), rnd.randint(3, 6))
    pool = [s for s in HOME if s.country in countries]
    cities = rnd.sample(pool, min(len(pool), rnd.randint(10, 40)))
    weights = [1.0 / (i + 1) for i in range(len(cities))]  # Zipf: a few runners do most jobs
    team, jobs = cities[0], rnd.randint(5, 30)
    nightly = rnd.uniform(0, 24)

    def day(em: Emitter, d: int, t0: float) -> None:
        r = em.rnd
        _, dow = local(team, local_time(team, t0, 12.0))
        starts = [local_time(team, t0, r.uniform(8, 20)) for _ in range(
            jobs if dow < 5 else r.randint(0, 3))]  # fmt: skip
        starts.append(t0 + nightly * HOUR)
        for s in starts:
            city = r.choices(cities, weights)[0]
            dur = r.uniform(2, 10) * MINUTE
            em.poisson(s, s + dur, r.uniform(10, 150) * HOUR / dur, city, 6)

    return [KeyPlan(_kid(rnd), "ci_fleet", rnd.getrandbits(32), day, cities, "GitHub-Actions")]


def plan_traveller(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A developer who flies abroad (plausible speed) and works local hours there."""
    home = rnd.choice(HOME)
    far = [s for s in HOME if s.country != home.country and dist_km(s, home) > 1500]
    dest = rnd.choice(far)
    leave = rnd.randint(max(2, days - 12), days - 6)
    back = leave + rnd.randint(3, 6)
    flight = (dist_km(home, dest) / 800.0 + 3.0) * HOUR
    rate = _lognormal(rnd, 150, 0.6, 40, 600)

    def day(em: Emitter, d: int, t0: float) -> None:
        if d == leave:  # morning at home, then the flight, then an evening session abroad
            dep = local_time(home, t0, 10.0)
            em.bursty(dep - 2 * HOUR, dep - HOUR, rate, home, 2)
            arr = dep + flight
            lh, _ = local(dest, arr + HOUR)
            if 8 <= lh <= 21:
                em.bursty(arr + HOUR, arr + 2 * HOUR, rate, dest, 2)
        elif leave < d < back:  # nothing abroad before the plane lands
            arrived = local_time(home, t0 - (d - leave) * DAY, 10.0) + flight + HOUR
            mark = len(em.out)
            _sessions(em, t0, dest, 2, rate, 0.1)
            em.out[mark:] = [row for row in em.out[mark:] if row[0] >= arrived]
        elif d != back:
            _sessions(em, t0, home, 2, rate, 0.1)

    return [KeyPlan(_kid(rnd), "traveller", rnd.getrandbits(32), day, [home], SDK_UAS[2])]


def plan_cron_late(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A nightly job at HH:55 that starts 2-9 minutes late on some days (into the next hour)."""
    site, hour = rnd.choice(HOME), rnd.randint(0, 23)
    n = _lognormal(rnd, 800, 0.8, 200, 5000)

    def day(em: Emitter, d: int, t0: float) -> None:
        r = em.rnd
        s = t0 + hour * HOUR + 55 * MINUTE + (r.uniform(2, 9) * MINUTE if r.random() < 0.3 else 0)
        dur = r.uniform(8, 15) * MINUTE
        em.poisson(s, s + dur, n * r.uniform(0.8, 1.2) * HOUR / dur, site, 1, focus="job")

    return [KeyPlan(_kid(rnd), "cron_late", rnd.getrandbits(32), day, [site], "cron/1.0")]


def _batch(em: Emitter, s: float, n: float, site: Site) -> None:
    dur = em.rnd.uniform(20, 60) * MINUTE
    em.poisson(s, s + dur, n * HOUR / dur, site, 1, focus="job")


def plan_weekly(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A small office key plus a weekly batch (2-20k requests) that first runs after learning."""
    site = rnd.choice(HOME)
    per_day, weekday, hour = (
        _lognormal(rnd, 150, 0.5, 50, 300),
        rnd.randint(0, 6),
        rnd.uniform(1, 5),
    )
    n = _lognormal(rnd, 5000, 0.8, 2000, 20000)

    def day(em: Emitter, d: int, t0: float) -> None:
        _workday(em, t0, site, 2, per_day, 8.5, 17.5)
        _, dow = local(site, local_time(site, t0, 12.0))
        if dow == weekday and d >= 8:
            _batch(em, local_time(site, t0, hour), n, site)

    return [KeyPlan(_kid(rnd), "weekly", rnd.getrandbits(32), day, [site], SDK_UAS[0])]


def plan_monthly(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A modest 24x7 key with a month-end/first-of-month report run (10-30k requests)."""
    site = rnd.choice(HOME)
    peak, n = _lognormal(rnd, 40, 0.6, 10, 200), _lognormal(rnd, 15000, 0.5, 10000, 30000)

    def day(em: Emitter, d: int, t0: float) -> None:
        _server_day(em, t0, [site], peak, lambda _t: 1.0)
        if (int(t0 // DAY) + 4) % 30 == 0:  # about monthly; falls inside every 3-week run
            _batch(em, t0 + 1.5 * HOUR, n, site)

    return [KeyPlan(_kid(rnd), "monthly", rnd.getrandbits(32), day, [site], SDK_UAS[3])]


def plan_rotation(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A key rotated to a new id: both run for a day, then only the new one."""
    base = (plan_office if rnd.random() < 0.5 else plan_server)(rnd, days)[0]
    r = rnd.randint(6, days - 5)
    old = KeyPlan(base.key_id, "rotation", base.seed, base.day, base.home, base.ua, last_day=r + 1)
    new = KeyPlan(_kid(rnd), "rotation", rnd.getrandbits(32), base.day, base.home, base.ua, r,
                  mix_seed=base.seed)  # fmt: skip
    return [old, new]


def plan_sparse(rnd: random.Random, days: int) -> list[KeyPlan]:
    """A rarely used key: a few requests on some days, a weekly export of 100-500 requests."""
    site, weekday = rnd.choice(HOME), rnd.randint(0, 4)
    n = rnd.uniform(100, 500)

    def day(em: Emitter, d: int, t0: float) -> None:
        r = em.rnd
        if r.random() < 0.4:
            for _ in range(r.randint(1, 3)):
                em.at(local_time(site, t0, r.uniform(8, 20)), site, 0)
        _, dow = local(site, local_time(site, t0, 12.0))
        if dow == weekday:
            s = local_time(site, t0, r.uniform(9, 16))
            em.poisson(s, s + r.uniform(5, 15) * MINUTE, n * 6, site, 1, focus="job")

    return [KeyPlan(_kid(rnd), "sparse", rnd.getrandbits(32), day, [site], "curl/8.5.0")]


PLANNERS: dict[str, Callable[[random.Random, int], list[KeyPlan]]] = {
    "ci_fleet": plan_ci_fleet,
    "cron_late": plan_cron_late,
    "human": plan_human,
    "launch": lambda rnd, days: plan_server(rnd, days, "launch"),
    "monthly": plan_monthly,
    "multi_region": plan_multi_region,
    "office": plan_office,
    "rotation": plan_rotation,
    "server": plan_server,
    "sparse": plan_sparse,
    "traveller": plan_traveller,
    "weekly": plan_weekly,
}


def plan(shape: str, rnd: random.Random, days: int) -> list[KeyPlan]:
    """Plans for one benign shape (rotation gives two keys)."""
    return PLANNERS[shape](rnd, days)


# ---- attacks -------------------------------------------------------------------------------


def suits(attack: str, victim: KeyPlan) -> bool:
    """Whether an attack makes sense on this key (distributed abuse hides in 24x7 traffic)."""
    if attack == "distributed":
        return victim.shape in _ALWAYS_ON
    if attack in ("classic", "night_scraping"):
        return victim.shape in _HUMAN
    return True


def _foreign(rnd: random.Random, victim: KeyPlan) -> Site:
    known = {s.country for s in victim.home}
    return rnd.choice([s for s in AWAY if s.country not in known])


def _same_country_vm(rnd: random.Random, victim: KeyPlan) -> Site:
    home = victim.home[0]
    return rnd.choice([s for s in HOME if s.country == home.country and s not in victim.home])


def _overlay(
    em: Emitter, t0: float, a: float, b: float, per_hour: float, sites: list[Site], ua: str
) -> None:
    """Attack traffic in [a, b) ∩ this day, the first request exactly at ``a``."""
    lo, hi = max(a, t0), min(b, t0 + DAY)
    if lo >= hi:
        return
    if lo == a:
        em.at(a, sites[0], 0, ua)
    per_site = per_hour / len(sites)
    for s in sites:
        em.poisson(lo, hi, per_site, s, 6, ua)


def _typical_peak(victim: KeyPlan, rnd: random.Random, start: float, days: int) -> float:
    """The victim's busiest benign hour (requests), from a sample of its traffic."""
    counts: dict[int, int] = {}
    for row in victim.stream(start, min(days, 8)):
        h = int(row[0] // HOUR)
        counts[h] = counts.get(h, 0) + 1
    busy = sorted(counts.values())
    return float(busy[int(len(busy) * 0.9)]) if busy else 10.0


def _night(victim: KeyPlan, t0: float, rnd: random.Random) -> float:
    return local_time(victim.home[0], t0, rnd.uniform(1.0, 3.5))


def _workhour(victim: KeyPlan, t0: float, rnd: random.Random) -> float:
    site = victim.home[0]
    while local(site, local_time(site, t0, 12.0))[1] >= 5:
        t0 += DAY
    return local_time(site, t0, rnd.uniform(10.0, 15.0))


def _probe(at: float, n: int, site: Site, ua: str) -> DayFn:
    """About ``n`` requests within 10 minutes from ``at``."""

    def day(em: Emitter, d: int, t: float) -> None:
        _overlay(em, t, at, at + 600, n * 6, [site], ua)

    return day


def attack(name: str, victim: KeyPlan, rnd: random.Random, start: float, days: int) -> None:
    """Overlay attack ``name`` on the victim during the last week and label it."""
    ua = rnd.choice(ATTACK_UAS)
    peak = _typical_peak(victim, rnd, start, days)
    t0 = start + rnd.randint(days - 7, days - 3) * DAY
    fns: list[DayFn] = []
    if name == "low_slow":
        a = _workhour(victim, t0, rnd)
        b, rate, sites = a + 2 * DAY, rnd.uniform(1.5, 5), [_foreign(rnd, victim)]
    elif name == "same_country_vm":
        a = _workhour(victim, t0, rnd)
        b, rate, sites = a + rnd.uniform(12, 36) * HOUR, max(8 * peak, 120), [
            _same_country_vm(rnd, victim)]  # fmt: skip
    elif name == "distributed":
        a = t0 + rnd.uniform(0, 20) * HOUR
        b, rate = a + rnd.uniform(4, 12) * HOUR, max(5 * peak, 600)
        sites = rnd.sample([s for s in AWAY + HOME if s not in victim.home], rnd.randint(15, 25))
    elif name == "night_scraping":
        a = _night(victim, t0, rnd)
        site = _same_country_vm(rnd, victim) if rnd.random() < 0.5 else _foreign(rnd, victim)
        b, rate, sites = a + rnd.uniform(1, 3) * HOUR, max(50 * peak, 600), [site]
    elif name == "classic":
        a = _night(victim, t0, rnd)
        b, rate = a + rnd.uniform(30, 90) * MINUTE, max(rnd.uniform(20, 60) * peak, 900)
        sites = [_foreign(rnd, victim)]
    elif name == "probe_then_attack":
        site = _foreign(rnd, victim)
        probes = [_workhour(victim, t0 - k * DAY, rnd) for k in rnd.sample(range(2, 7), 2)]
        a = _workhour(victim, t0, rnd)
        b, rate, sites = a + rnd.uniform(30, 90) * MINUTE, max(rnd.uniform(10, 30) * peak, 600), [
            site]  # fmt: skip
        for p in probes:
            fns.append(_probe(p, rnd.randint(3, 10), site, ua))
    elif name == "duty_cycle":
        a = _workhour(victim, t0, rnd)
        b, per_min = a + 3 * HOUR, rnd.uniform(300, 800)
        home, vua = victim.home[0], victim.ua
        # It harvests one resource (whichever the attacker wants, the key's favourite or not).
        r2 = random.Random(victim.seed ^ 0xD07)  # (the attack plan's own draws stay as they were)
        target, share = r2.choice(DATA_ENDPOINTS), r2.uniform(0.85, 1.0)

        def cycle(em: Emitter, d: int, t: float) -> None:
            for k in range(36):
                s = a + k * 300.0
                if t <= s < t + DAY:
                    if k == 0:
                        em.at(s, home, 0, vua)
                    em.poisson(s, s + 120.0, per_min * 60, home, 3, vua, target, share)

        victim.overlays.append(cycle)
        victim.label = Label(victim.key_id, victim.shape, name, a, b)
        return
    else:
        raise ValueError(f"unknown attack {name!r}")
    fns.append(lambda em, d, t: _overlay(em, t, a, b, rate, sites, ua))
    victim.overlays.extend(fns)
    victim.label = Label(victim.key_id, victim.shape, name, a, b)


__all__ = ["ATTACKABLE", "PATHS", "attack", "plan", "suits"]

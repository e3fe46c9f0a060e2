"""Detection quality on simulated traffic: keywatch's analyzer vs the seed design's detector.

Run: ``python benchmarks/eval_quality.py [--keys 200 --days 16 --attacks 10 --seed 1]``.
Events are fed in event-time order, in per-key batches per minute of event time (as the worker
batches them); prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, KeyContext
from detectors.profile import KeyProfile
from geoip.resolver import GeoResolver
from worker.simulate import ATTACKS, Simulation, simulate

EXPECTED = {  # signal types that count as detecting each attack class
    "new_country": {"geo.new_country"},
    "spike": {"usage.spike"},
    "off_hours": {"time.off_hours"},
    "compromise": {"geo.new_country", "usage.spike", "time.off_hours"},
    "impossible_travel": {"geo.impossible_travel"},
}
NAIVE_TYPES = {"geo.new_country": "geo", "usage.spike": "usage", "time.off_hours": "temporal"}
GRACE = 6 * 3600.0  # alerts up to one cooldown after an attack belong to it


@dataclass
class Found:
    """One alert, reduced to what the evaluation needs."""

    key_id: str
    ts: float
    severity: str
    action: str
    types: set[str] = field(default_factory=set)


class NaiveDetector:
    """The seed design's detector, re-implemented for reference.

    Baselines (countries, hours) are learned during a warm-up and then fixed, as the seed's
    configured baselines are; the usage baseline is the mean over all hours so far; the recent
    rate is the last hour's count; every request that matches raises an alert.
    """

    def __init__(self, warmup_s: float) -> None:
        self.warmup_s = warmup_s
        self.first: dict[str, float] = {}
        self.count: dict[str, int] = defaultdict(int)
        self.countries: dict[str, set[str]] = defaultdict(set)
        self.hours: dict[str, set[int]] = defaultdict(set)
        self.recent: dict[str, deque[float]] = defaultdict(deque)

    def check(self, key: str, ts: float, country: str | None) -> list[Found]:
        """Alerts for one request."""
        first = self.first.setdefault(key, ts)
        self.count[key] += 1
        recent = self.recent[key]
        recent.append(ts)
        while recent[0] < ts - 3600:
            recent.popleft()
        hour = int(ts // 3600) % 24
        if ts - first < self.warmup_s:
            if country:
                self.countries[key].add(country)
            self.hours[key].add(hour)
            return []
        out = []
        if country and country not in self.countries[key]:
            out.append(Found(key, ts, "medium", "log", {"geo.new_country"}))
        mean = self.count[key] / max(1.0, (ts - first) / 3600)
        if len(recent) > 10 * mean:
            out.append(Found(key, ts, "high", "throttle", {"usage.spike"}))
        if hour not in self.hours[key]:
            out.append(Found(key, ts, "low", "log", {"time.off_hours"}))
        return out


def run(sim: Simulation, geo: GeoResolver) -> tuple[list[Found], list[Found], int, float]:
    """Replay the simulation through both detectors; returns alerts, naive alerts, events, s."""
    analyzer = Analyzer(geo)
    naive = NaiveDetector(7 * 86400)
    profiles: dict[str, KeyProfile] = {}
    contexts: dict[str, KeyContext] = {}
    pending: dict[str, list[AccessEvent]] = defaultdict(list)
    found: list[Found] = []
    naive_found: list[Found] = []
    minute, n, busy = -1, 0, 0.0

    def flush() -> float:
        t = time.perf_counter()
        for key_id, evs in pending.items():
            ctx = contexts.setdefault(key_id, KeyContext(key_id, "acme"))
            prof, alerts = analyzer.analyze(ctx, profiles.get(key_id), evs, evs[-1].ts)
            profiles[key_id] = prof
            for a in alerts:
                found.append(Found(key_id, a.ts, a.severity, a.action, {s.type for s in a.signals}))
        pending.clear()
        return time.perf_counter() - t

    for ts, key_id, ip, method, path, status, gw in sim.rows():
        n += 1
        m = int(ts) // 60
        if m != minute:
            busy += flush()
            minute = m
        pending[key_id].append(AccessEvent(ts, key_id, ip, method, path, status, gateway=gw))
        g = geo.lookup(ip)
        naive_found.extend(naive.check(key_id, ts, g.country if g else None))
    busy += flush()
    return found, naive_found, n, busy


def score(sim: Simulation, alerts: list[Found], naive: bool) -> list[str]:
    """Markdown rows: per attack class, then benign totals."""
    by_key: dict[str, list[Found]] = defaultdict(list)
    for a in alerts:
        by_key[a.key_id].append(a)
    rows, attack_alerts = [], set()
    for cls in ATTACKS:
        labels = [lb for lb in sim.labels if lb.attack == cls]
        if not labels:
            continue
        det = revoked = total = 0
        for lb in labels:
            mine = [a for a in by_key[lb.key_id] if lb.start - 1 <= a.ts <= lb.end + GRACE]
            attack_alerts.update(id(a) for a in mine)
            total += len(mine)
            det += any(a.types & EXPECTED[cls] for a in mine)
            revoked += any(a.action == "revoke" for a in mine)
        rows.append(
            f"| {cls} | {det}/{len(labels)} ({100 * det / len(labels):.0f}%) | "
            f"{revoked}/{len(labels)} | {total / len(labels):.1f} |"
        )
    benign = [a for a in alerts if id(a) not in attack_alerts]
    key_days = len(sim.keys) * sim.days - 2 * len(sim.labels)
    high = sum(a.severity in ("high", "critical") for a in benign)
    revoked_keys = {a.key_id for a in benign if a.action == "revoke"}
    rows.append(
        f"| benign | {len(benign)} alerts ({1000 * len(benign) / key_days:.1f}/1000 key-days) | "
        f"{len(revoked_keys)} keys revoked | {1000 * high / key_days:.2f} high+/1000 key-days |"
    )
    return rows


def main() -> None:
    """Parse flags, run, print the table."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--days", type=int, default=16)
    ap.add_argument("--attacks", type=int, default=10, help="attacks per class")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    sim = simulate(args.keys, args.days, args.attacks, args.seed)
    with GeoResolver() as geo:
        t = time.perf_counter()
        found, naive_found, n, busy = run(sim, geo)
        wall = time.perf_counter() - t
    print(
        f"{args.keys} keys x {args.days} days, {n} events, {len(sim.labels)} attacks, "
        f"seed {args.seed}; analyzer {1e6 * busy / n:.1f} µs/event (wall {wall:.0f} s)\n"
    )
    for name, alerts, naive in (("keywatch", found, False), ("seed detector", naive_found, True)):
        print(f"### {name}\n")
        print("| attack class | detected | revoked | alerts per attack |")
        print("|---|---|---|---|")
        print("\n".join(score(sim, alerts, naive)))
        print()


if __name__ == "__main__":
    main()

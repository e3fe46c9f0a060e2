"""Detection quality on realistic traffic: per benign shape and per attack class.

Run: ``python benchmarks/eval_quality.py [--keys 300 --days 21 --attacks 10 --seed 1]
[--traffic realistic|heldout|both] [--asn]``.

``--asn`` adds a simulated ASN database (``worker.sitedata.site_networks``: ISPs for the sites
keys live at, mostly hosting/VPN networks for attack sites), so the network detectors
(``network.new_asn``, ``network.new_class``) take part; without it they are silent, as in a
deployment without ``KEYWATCH_GEOIP_ASN_DB``.

``realistic`` is ``keywatch simulate --realistic`` (``worker.traffic``); ``heldout`` is
``benchmarks/heldout_traffic.py``, a separately written generator with other distributions,
another season (spring daylight saving), other sites and attack parameters, which detection was
never tuned on. Events are fed in event-time order in per-key batches per minute of event time
(as the worker batches them). Prints markdown tables:

- benign (keys never attacked): keys revoked, throttle alerts and notify-or-higher alerts per
  1000 key-days (a key-day: a day between a key's first and last event);
- attacks: keys detected (an alert at notify or above from the attack's first request until 6 h
  after it ends), keys revoked, and time from the attack's first request to the first alert.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.analyzer import Analyzer
from detectors.model import ACTION_RANK, AccessEvent, KeyContext
from detectors.profile import KeyProfile
from geoip.resolver import GeoResolver
from worker.reorder import order_key
from worker.traffic import ATTACKS, COMPROMISE_GRADE, Label, Row, realistic

GRACE = 6 * 3600.0  # alerts up to 6 h after an attack ends belong to it
NOTIFY = ACTION_RANK["notify"]


@dataclass(frozen=True, slots=True)
class Found:
    """One alert, reduced to what the evaluation needs."""

    key_id: str
    ts: float
    severity: str
    action: str
    types: frozenset[str]


def run(
    rows: Iterable[Row], geo: GeoResolver
) -> tuple[list[Found], dict[str, tuple[float, float]], int, float]:
    """Feed the rows to one analyzer; returns alerts, per-key first/last ts, events, busy s."""
    analyzer = Analyzer(geo)
    profiles: dict[str, KeyProfile] = {}
    contexts: dict[str, KeyContext] = {}
    pending: dict[str, list[AccessEvent]] = defaultdict(list)
    span: dict[str, tuple[float, float]] = {}
    found: list[Found] = []
    minute, n, busy = -1, 0, 0.0

    def flush() -> float:
        t = time.perf_counter()
        for key_id, evs in pending.items():
            evs.sort(key=order_key)  # ties broken as the worker and replay break them
            ctx = contexts.setdefault(key_id, KeyContext(key_id, "acme"))
            prof, alerts = analyzer.analyze(ctx, profiles.get(key_id), evs, evs[-1].ts)
            profiles[key_id] = prof
            for a in alerts:
                types = frozenset(s.type for s in a.signals)
                found.append(Found(key_id, a.ts, a.severity, a.action, types))
        pending.clear()
        return time.perf_counter() - t

    for ts, key_id, ip, method, path, status, gw, ua in rows:
        n += 1
        m = int(ts) // 60
        if m != minute:
            busy += flush()
            minute = m
        pending[key_id].append(AccessEvent(ts, key_id, ip, method, path, status, ua, gateway=gw))
        first = span.get(key_id)
        span[key_id] = (ts, ts) if first is None else (first[0], ts)
    busy += flush()
    return found, span, n, busy


def score(
    labels: Sequence[Label], found: list[Found], span: dict[str, tuple[float, float]]
) -> Iterator[str]:
    """Markdown tables: benign per shape and in total, then per attack class."""
    by_key: dict[str, list[Found]] = defaultdict(list)
    for a in found:
        by_key[a.key_id].append(a)
    yield (
        "| benign shape | keys | key-days | keys revoked | throttles /1000 kd | notify+ /1000 kd |"
    )
    yield "|---|---|---|---|---|---|"
    per: dict[str, Counter[str]] = defaultdict(Counter)
    for lb in labels:
        if lb.attack is not None or lb.key_id not in span:
            continue
        c = per[lb.shape]
        first, last = span[lb.key_id]
        c["keys"] += 1
        c["kd"] += max(1, round((last - first) / 86400.0))
        mine = by_key[lb.key_id]
        c["revoked"] += any(a.action == "revoke" for a in mine)
        c["throttle"] += sum(a.action == "throttle" for a in mine)
        c["notify"] += sum(ACTION_RANK[a.action] >= NOTIFY for a in mine)
    total: Counter[str] = Counter()
    for shape in [*sorted(per), "**all benign**"]:
        c = per.get(shape) or total
        if shape in per:
            total.update(c)
        kd = max(1, c["kd"])
        yield (
            f"| {shape} | {c['keys']} | {c['kd']} | {c['revoked']} | "
            f"{1000 * c['throttle'] / kd:.1f} | {1000 * c['notify'] / kd:.1f} |"
        )
    yield ""
    yield "| attack class | detected | revoked | first alert after (median / max) |"
    yield "|---|---|---|---|"
    for cls in ATTACKS:
        mine = [lb for lb in labels if lb.attack == cls]
        if not mine:
            continue
        det = rev = 0
        delays: list[float] = []
        for lb in mine:
            window = [
                a for a in by_key[lb.key_id]
                if lb.start <= a.ts <= lb.end + GRACE and ACTION_RANK[a.action] >= NOTIFY
            ]  # fmt: skip
            if window:
                det += 1
                delays.append(min(a.ts for a in window) - lb.start)
            rev += any(a.action == "revoke" for a in window)
        need = " (must)" if cls in COMPROMISE_GRADE else ""
        lat = f"{statistics.median(delays):.0f} s / {max(delays):.0f} s" if delays else "-"
        yield f"| {cls} | {det}/{len(mine)} | {rev}/{len(mine)}{need} | {lat} |"


def _simulated_asn_db() -> Path:
    """Write the simulators' networks as a GeoLite2-ASN-shaped database (temporary file)."""
    import atexit
    import shutil
    import tempfile

    from geoip.testdb import write_asn_db
    from worker.sitedata import site_networks

    d = Path(tempfile.mkdtemp(prefix="keywatch-eval-"))
    atexit.register(shutil.rmtree, d, True)
    nets = {cidr: {"asn": asn, "org": org} for cidr, (asn, org) in site_networks().items()}
    return write_asn_db(d / "asn.mmdb", nets)


def main() -> None:
    """Parse flags, run, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--attacks", type=int, default=10, help="attacked keys per class")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--traffic", choices=("realistic", "heldout", "both"), default="both")
    ap.add_argument("--asn", action="store_true", help="with a simulated ASN database")
    args = ap.parse_args()
    asn_db = _simulated_asn_db() if args.asn else None
    kinds = ("realistic", "heldout") if args.traffic == "both" else (args.traffic,)
    for kind in kinds:
        if kind == "realistic":
            traffic = realistic(args.keys, args.days, args.attacks, args.seed)
            rows, labels = traffic.rows(), traffic.labels
        else:
            from benchmarks.heldout_traffic import heldout

            held = heldout(args.keys, args.days, args.attacks, args.seed + 1000)
            rows, labels = held.rows(), held.labels
        with GeoResolver(asn_db=asn_db) as geo:
            t = time.perf_counter()
            found, span, n, busy = run(rows, geo)
            wall = time.perf_counter() - t
        print(
            f"## {kind}: {len(labels)} keys x {args.days} days, {n} events, "
            f"{sum(lb.attack is not None for lb in labels)} attacked keys, seed {args.seed}"
            f"{', simulated ASN database' if asn_db else ''}; "
            f"analyzer {1e6 * busy / max(1, n):.1f} µs/event (wall {wall:.0f} s)\n"
        )
        print("\n".join(score(labels, found, span)))
        print()


if __name__ == "__main__":
    main()

"""Offline replay: the worker's parsing, profiles, detectors and policy over log files.

``Replay.read`` parses every line (one Kafka message: an event or a JSON array of events) with
``worker.ingest.parse_message``, resolves key hashes through the key store when there is one,
and keeps each event as one compact tuple. ``Replay.run`` sorts them by event time, ties broken
as the live worker breaks them (``worker.reorder.order_key``), and hands them to
``Analyzer.analyze`` per key in per-minute batches of event time, with ``detected_at`` = the
batch's newest event time, so two runs over the same input give identical alerts, whatever
the order of the input, and the worker's equal them while its sources stay within the
reorder bounds (README, "Live equals replay").

Memory: everything is read before it is sorted. An event costs ~300 bytes (a tuple whose
repeated strings are interned; the request id is its only unique string): measured 290 MB peak
for 703k events (100 keys x 10 days, replayed in 16 s with the HTML report), so a few million
events fit in 1-2 GB; split larger inputs by time and replay them in order.
"""

from __future__ import annotations

import gzip
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import IO, Final, cast

from core.errors import InputError
from detectors.analyzer import Analyzer
from detectors.auth_abuse import NetworkState
from detectors.model import AccessEvent, Alert, KeyContext, iso
from detectors.profile import KeyProfile, hour_of_week
from worker.authfail import analyze_networks, network_event, take_networks
from worker.ingest import KeyInfo, KeyResolver, parse_message
from worker.lines import bounded_lines
from worker.report import KeyReport

# ts, seq, then AccessEvent's other fields in its order: key_id, ip, method, path, status,
# user_agent, request_id, gateway, account_id, key_in_query, fmt.
Row = tuple[
    float, int, str, str, str, str, int, str, str, str, str | None, bool, str, str | None, str
]
_KEY: Final = 2
_IP: Final = 3
Lookup = Callable[[str], KeyInfo | None]
_intern = sys.intern
# worker.reorder.order_key on rows: ts, request_id, ip, path, method, status, user_agent,
# gateway (the live worker's order), then the read order for events equal in all of them
_IN_ORDER = itemgetter(0, 8, 3, 5, 4, 6, 7, 9, 1)


@dataclass(slots=True)
class Stats:
    """What a replay read and found."""

    lines: int = 0
    events: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    keys: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0

    @property
    def key_days(self) -> float:
        """Distinct keys x days of event time covered (at least one day)."""
        return self.keys * max(1.0, (self.last_ts - self.first_ts) / 86400.0)


def open_input(path: str) -> IO[bytes]:
    """A binary stream for a file name, ``-`` (stdin) or a ``.gz`` file (read directly)."""
    if path == "-":
        return sys.stdin.buffer
    try:
        if path.endswith(".gz"):
            return cast(IO[bytes], gzip.open(path, "rb"))
        return open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", "unreadable") from exc


def _event(row: Row) -> AccessEvent:
    return AccessEvent(row[0], *row[2:])


class Replay:
    """Reads access-log messages, then replays them through one ``Analyzer`` in event time."""

    def __init__(
        self,
        analyzer: Analyzer,
        fmt: str = "auto",
        by_hash: Lookup | None = None,
        by_id: Lookup | None = None,
    ) -> None:
        self.analyzer = analyzer
        self.fmt = fmt
        self.stats = Stats()
        self.rows: list[Row] = []
        self.profiles: dict[str, KeyProfile] = {}
        self.networks: dict[str, NetworkState] = {}  # detectors.auth_abuse, per client network
        self._by_id = by_id
        self._resolver = KeyResolver(by_hash or (lambda _h: None), by_id)
        self._contexts: dict[str, KeyContext] = {}

    # ---- reading ------------------------------------------------------------------------

    def read_stream(self, stream: IO[bytes], on_lines: Callable[[int], None] | None = None) -> None:
        """Read every line of a stream (``on_lines(n)`` every 1000 lines and at the end).

        A corrupt stream (a truncated or bad gzip file) counts as one ``unreadable`` reject and
        raises ``InputError`` after the lines read before it were kept.
        """
        n = 0
        try:
            for n, line in enumerate(bounded_lines(stream), start=1):
                if line is None:  # longer than MAX_LINE_BYTES: skipped, never held whole
                    self.stats.rejects["line_too_long"] += 1
                    continue
                self.read_line(line)
                if on_lines is not None and n % 1000 == 0:
                    on_lines(1000)
        except (OSError, EOFError) as exc:
            self.stats.rejects["unreadable"] += 1
            raise InputError(f"stopped reading: {exc}", "unreadable") from exc
        finally:
            if on_lines is not None and n % 1000:
                on_lines(n % 1000)

    def read_line(self, line: bytes) -> None:
        """Parse one message; good events are kept, rejects counted by reason."""
        line = line.strip()
        if not line:
            return
        st = self.stats
        st.lines += 1
        result = parse_message(line, self.fmt)
        for rej in result.rejects:
            st.rejects[rej.reason] += 1
            if rej.record is not None:  # as live: no credential, refused: network evidence
                failed = network_event(rej.record)
                if failed is not None:
                    self._keep(failed)
        for raw in result.events:
            try:
                ev = self._resolver.resolve(raw)
            except InputError as exc:
                st.rejects[exc.reason] += 1
                failed = network_event(raw)  # as live: refused, so evidence for its network
                if failed is not None:
                    self._keep(failed)
                continue
            self._keep(ev)
            st.formats[result.fmt] += 1

    def _keep(self, ev: AccessEvent) -> None:
        acc = ev.account_id
        self.rows.append(
            (
                ev.ts,
                len(self.rows),
                _intern(ev.key_id),
                _intern(ev.ip),
                _intern(ev.method),
                _intern(ev.path),
                ev.status,
                _intern(ev.user_agent),
                ev.request_id,
                _intern(ev.gateway),
                _intern(acc) if acc is not None else None,
                ev.key_in_query,
                ev.fmt,
                ev.extra_key_hash,
                ev.auth,  # the gateway's verdict: refused requests are evidence, not usage
            )
        )
        self.stats.events += 1

    # ---- replaying ----------------------------------------------------------------------

    def context(self, key_id: str, account_id: str | None) -> KeyContext:
        """What the policy knows about a key: the key store's record, else the event's account."""
        ctx = self._contexts.get(key_id)
        if ctx is None:
            info = self._resolver.lookup_id(key_id) if self._by_id is not None else None
            if info is not None:
                ctx = KeyContext(key_id, info.account_id, info.environment, info.status)
            else:
                ctx = KeyContext(key_id, account_id)
            self._contexts[key_id] = ctx
        return ctx

    def run(
        self,
        on_alert: Callable[[Alert], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[Alert]:
        """Analyze every event in event-time order, per key, in per-minute batches."""
        self.rows.sort(key=_IN_ORDER)
        st = self.stats
        if self.rows:
            st.first_ts, st.last_ts = self.rows[0][0], self.rows[-1][0]
        alerts: list[Alert] = []
        pending: dict[str, list[AccessEvent]] = defaultdict(list)
        minute = None
        for i, row in enumerate(self.rows):
            m = int(row[0]) // 60
            if m != minute:
                self._flush(pending, alerts, on_alert)
                minute = m
                if on_progress is not None:
                    on_progress(i)
            pending[row[_KEY]].append(_event(row))
        self._flush(pending, alerts, on_alert)
        if on_progress is not None:
            on_progress(len(self.rows))
        st.keys = len(self.profiles)
        return alerts

    def _flush(
        self,
        pending: dict[str, list[AccessEvent]],
        alerts: list[Alert],
        on_alert: Callable[[Alert], None] | None,
    ) -> None:
        analyze, profiles = self.analyzer.analyze, self.profiles
        nets = take_networks(pending)  # failed attempts per client network, as live
        newest = max((evs[-1].ts for evs in nets.values()), default=0.0)
        found = analyze_networks(self.networks, nets, self.analyzer.config, newest)
        for alert in found:
            alerts.append(alert)
            if on_alert is not None:
                on_alert(alert)
        for key_id, evs in pending.items():
            ctx = self.context(key_id, evs[0].account_id)
            prof, found = analyze(ctx, profiles.get(key_id), evs, evs[-1].ts)
            profiles[key_id] = prof
            for alert in found:
                alerts.append(alert)
                if on_alert is not None:
                    on_alert(alert)
        pending.clear()

    # ---- explaining ---------------------------------------------------------------------

    def key_reports(self, alerts: Iterable[Alert]) -> list[KeyReport]:
        """Per alerted key (in order of first alert): hourly rate, baseline, places, hops."""
        by_key: dict[str, list[Alert]] = {}
        for a in alerts:
            if a.key_id is not None:
                by_key.setdefault(a.key_id, []).append(a)
        hourly: dict[str, Counter[int]] = {k: Counter() for k in by_key}
        places: dict[str, Counter[tuple[str, str]]] = {k: Counter() for k in by_key}
        # when each country and network (ASN) was first seen, per key: the report's timeline
        firsts: dict[str, dict[tuple[str, object], tuple[float, str]]] = {k: {} for k in by_key}
        lookup = self.analyzer.geo.lookup if self.analyzer.geo is not None else None
        for row in self.rows:
            k = row[_KEY]
            if k in hourly:
                hourly[k][int(row[0]) // 3600] += 1
                geo = lookup(row[_IP]) if lookup is not None else None
                if geo is not None and geo.country is not None:
                    places[k][(geo.country, geo.city or "")] += 1
                    where = f"{geo.country}/{geo.city}" if geo.city else geo.country
                    firsts[k].setdefault(("country", geo.country), (row[0], where))
                    if geo.asn is not None:
                        net = f"AS{geo.asn} {geo.asn_org or ''}".strip()
                        firsts[k].setdefault(("network", geo.asn), (row[0], net))
        # the whole replay's span: hours without traffic (e.g. after a revocation) are drawn
        span = (int(self.stats.first_ts) // 3600, int(self.stats.last_ts) // 3600)
        return [
            self._report(k, al, hourly[k], places[k], firsts[k], span) for k, al in by_key.items()
        ]

    def _report(
        self,
        key_id: str,
        alerts: list[Alert],
        hourly: Counter[int],
        places: Counter[tuple[str, str]],
        firsts: dict[tuple[str, object], tuple[float, str]] | None = None,
        span: tuple[int, int] | None = None,
    ) -> KeyReport:
        first, last = min(hourly), max(hourly)
        if span is not None:
            first, last = min(first, span[0]), max(last, span[1])
        prof = self.profiles.get(key_id)
        how = prof.how if prof is not None else [-1.0] * 168
        baseline = [
            None if how[hour_of_week(h)] < 0 else round(how[hour_of_week(h)], 2)
            for h in range(first, last + 1)
        ]
        hops = [
            {**s.evidence, "at": iso(a.ts)}
            for a in alerts
            for s in a.signals
            if s.type == "geo.impossible_travel" and "from" in s.evidence
        ]
        return KeyReport(
            key_id=key_id,
            account_id=alerts[0].account_id,
            first_hour=first,
            hourly=[hourly.get(h, 0) for h in range(first, last + 1)],
            baseline=baseline,
            alerts=alerts,
            places=[(cc, city, n) for (cc, city), n in places.most_common()],
            hops=hops,
            usual_hours=prof.usual_hours if prof is not None else (1 << 24) - 1,
            firsts=sorted((ts, kind, label) for (kind, _), (ts, label) in (firsts or {}).items()),
        )


def summary_lines(stats: Stats, alerts: list[Alert]) -> list[str]:
    """The human summary: input, rejects, alerts by type/severity/action, rate per key-day."""
    by_type: Counter[str] = Counter()
    for a in alerts:
        by_type.update({s.type for s in a.signals})
    sev: Counter[str] = Counter(a.severity for a in alerts)
    act: Counter[str] = Counter(a.action for a in alerts)
    rejected = sum(stats.rejects.values())
    per_kd = 1000.0 * len(alerts) / stats.key_days if stats.keys else 0.0
    lines = [
        f"messages read: {stats.lines}; events: {stats.events} "
        f"({_counts(stats.formats) or 'none'}); rejected: {rejected}"
        + (f" ({_counts(stats.rejects)})" if rejected else ""),
        f"keys: {stats.keys}; key-days: {stats.key_days:.1f}",
        f"alerts: {len(alerts)} ({per_kd:.2f} per 1000 keys per day)",
    ]
    if alerts:
        lines += [
            f"by type: {_counts(by_type)}",
            f"by severity: {_counts(sev)}",
            f"by action: {_counts(act)}",
        ]
    return lines


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))

"""The replay report: one self-contained HTML page explaining every alerted key.

Keys are ordered by severity (worst alert first), and the index names each key's worst alert.
Per alerted key: its hourly request rate against its learned hour-of-week baseline (inline SVG,
log scale, a step per hour so an hour without traffic sits on the axis, the key's usual hours of
day as a shaded band, alerts and first sightings marked), a timeline of the countries and
networks it was first seen from, where it was used from (countries and cities with counts), the
impossible-travel hops, and its alerts. No external assets and no JavaScript: the page is one
file a person can mail or attach to a ticket. Every piece of text is ``html.escape``d.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from detectors.model import SEVERITY_RANK, Alert, iso

HOUR = 3600
ALL_HOURS = (1 << 24) - 1  # a key still learning: every hour counts as usual
_W, _H = 920, 240  # chart size in px
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 52, 12, 12, 34


@dataclass(slots=True)
class KeyReport:
    """Everything the page shows about one alerted key."""

    key_id: str
    account_id: str | None
    first_hour: int  # absolute hour (epoch // 3600) of ``hourly[0]``
    hourly: list[int]  # requests per hour, one per hour from ``first_hour``
    baseline: list[float | None]  # the profile's hour-of-week baseline for the same hours
    alerts: list[Alert]
    places: list[tuple[str, str, int]] = field(default_factory=list)  # country, city, requests
    hops: list[dict[str, Any]] = field(default_factory=list)  # impossible-travel evidence
    usual_hours: int = ALL_HOURS  # bit h set: hour h (UTC) of the day is usual for the key
    firsts: list[tuple[float, str, str]] = field(default_factory=list)  # ts, kind, "NG/Lagos"

    @property
    def worst(self) -> Alert | None:
        """The most severe alert (the earliest of equals)."""
        return max(self.alerts, key=lambda a: (SEVERITY_RANK[a.severity], -a.ts), default=None)


def by_severity(keys: Sequence[KeyReport]) -> list[KeyReport]:
    """Most severe first; then more alerts first; then the earliest first alert."""

    def rank(k: KeyReport) -> tuple[int, int, float]:
        worst = k.worst
        sev = SEVERITY_RANK[worst.severity] if worst is not None else -1
        first = min((a.ts for a in k.alerts), default=0.0)
        return (-sev, -len(k.alerts), first)

    return sorted(keys, key=rank)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _y(value: float, top: float) -> float:
    """Log-scale y pixel of a rate (requests per hour)."""
    frac = math.log10(1.0 + max(0.0, value)) / math.log10(1.0 + top)
    return _PAD_T + (1.0 - frac) * (_H - _PAD_T - _PAD_B)


def _x(i: float, n: int) -> float:
    return _PAD_L + i * (_W - _PAD_L - _PAD_R) / max(1, n - 1)


def _path(points: Sequence[tuple[float, float] | None]) -> str:
    """An SVG path through points; ``None`` breaks the line (unknown baseline)."""
    parts: list[str] = []
    pen_up = True
    for p in points:
        if p is None:
            pen_up = True
            continue
        parts.append(f"{'M' if pen_up else 'L'}{p[0]:.1f},{p[1]:.1f}")
        pen_up = False
    return " ".join(parts)


def _axes(k: KeyReport, top: float) -> list[str]:
    n = len(k.hourly)
    out = []
    decade = 1
    while decade <= top:
        y = _y(decade, top)
        out.append(
            f'<line class="grid" x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{decade}</text>'
        )
        decade *= 10
    step = 24 if n <= 24 * 21 else 24 * 7  # a tick per day, or per week on long replays
    for i in range(0, n, step):
        hour = k.first_hour + i
        if hour % 24 and step == 24:
            continue
        x = _x(i, n + 1)
        label = datetime.fromtimestamp(hour * HOUR, UTC).strftime("%m-%d")
        out.append(
            f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{_PAD_T}" y2="{_H - _PAD_B}"/>'
            f'<text class="tick" x="{x:.1f}" y="{_H - _PAD_B + 16}" text-anchor="middle">'
            f"{_e(label)}</text>"
        )
    return out


def _steps(values: Sequence[float | None], n: int, top: float) -> str:
    """A step path: each hour a flat segment over its own width (0 lies on the axis)."""
    points: list[tuple[float, float] | None] = []
    for i, v in enumerate(values):
        if v is None:
            points.append(None)
            continue
        y = _y(v, top)
        points += [(_x(i, n + 1), y), (_x(i + 1, n + 1), y)]
    return _path(points)


def _band(k: KeyReport) -> list[str]:
    """Shaded runs of the key's usual hours of day (nothing while it is still learning)."""
    if k.usual_hours == ALL_HOURS:
        return []
    n, out, start = len(k.hourly), [], None
    for i in range(n + 1):
        usual = i < n and bool(k.usual_hours >> ((k.first_hour + i) % 24) & 1)
        if usual and start is None:
            start = i
        elif not usual and start is not None:
            x0, x1 = _x(start, n + 1), _x(i, n + 1)
            out.append(
                f'<rect class="usual" x="{x0:.1f}" y="{_PAD_T}" width="{x1 - x0:.1f}" '
                f'height="{_H - _PAD_T - _PAD_B}"/>'
            )
            start = None
    return out


def usual_hours_text(mask: int) -> str:
    """``01:00-09:00, 13:00-18:00 UTC`` for a 24-bit mask of usual hours."""
    if mask == ALL_HOURS:
        return "not learned yet (every hour counts as usual)"
    runs, start = [], None
    for h in range(25):
        on = h < 24 and bool(mask >> h & 1)
        if on and start is None:
            start = h
        elif not on and start is not None:
            runs.append(f"{start:02d}:00-{h:02d}:00")
            start = None
    return (", ".join(runs) or "none") + " UTC"


def rate_chart(k: KeyReport) -> str:
    """Inline SVG: hourly requests (solid steps) vs baseline (dashed), usual hours shaded,
    alerts as red markers, first sightings of a country/network as ticks at the top."""
    n = len(k.hourly)
    top = max([1.0, *k.hourly, *(b for b in k.baseline if b is not None)]) * 1.2
    observed = _steps(k.hourly, n, top)
    base = _steps(k.baseline, n, top)
    marks = []
    for ts, kind, label in k.firsts:
        x = _x(min(max((ts - k.first_hour * HOUR) / HOUR, 0.0), n), n + 1)
        tip = f"{iso(ts)} first seen from {'network' if kind == 'network' else ''} {label}"
        marks.append(
            f'<path class="first {_e(kind)}" d="M{x:.1f},{_PAD_T} l-4,-8 h8 z">'
            f"<title>{_e(' '.join(tip.split()))}</title></path>"
        )
    for a in k.alerts:
        i = (a.ts - k.first_hour * HOUR) / HOUR
        x = _x(min(max(i, 0.0), n), n + 1)
        tip = f"{iso(a.ts)} {a.severity}/{a.action}: {a.summary}"
        marks.append(
            f'<line class="alert {_e(a.severity)}" x1="{x:.1f}" x2="{x:.1f}" y1="{_PAD_T}" '
            f'y2="{_H - _PAD_B}"><title>{_e(tip)}</title></line>'
        )
    title = f"Requests per hour of key {k.key_id} (log scale) against its baseline"
    return "".join(
        [
            f'<svg class="chart" viewBox="0 -10 {_W} {_H + 10}" width="{_W}" height="{_H + 10}" '
            f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>',
            *_band(k),
            *_axes(k, top),
            f'<path class="base" d="{base}"/>' if base else "",
            f'<path class="obs" d="{observed}"/>' if observed else "",
            *marks,
            f'<text class="tick" x="{_PAD_L}" y="{_H - 4}">UTC date; solid: requests/hour, '
            "dashed: hour-of-week baseline, shaded: usual hours, red: alerts, "
            "triangles: first seen from a country/network</text>",
            "</svg>",
        ]
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[object]], empty: str) -> str:
    if not rows:
        return f'<p class="none">{_e(empty)}</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _hop_row(h: dict[str, Any]) -> list[object]:
    src, dst = h.get("from") or {}, h.get("to") or {}
    return [
        h.get("at", ""),
        src.get("place", "?"),
        dst.get("place", "?"),
        h.get("distance_km", "?"),
        h.get("elapsed_s", "?"),
        h.get("speed_kmh", "?"),
    ]


def key_section(k: KeyReport) -> str:
    """One ``<section>`` for one alerted key."""
    alert_rows = [
        [iso(a.ts), a.severity, a.action, ", ".join(s.type for s in a.signals), a.summary]
        for a in k.alerts
    ]
    total = sum(c for _, _, c in k.places) or 1
    place_rows = [[cc, city or "-", n, f"{100 * n / total:.1f}%"] for cc, city, n in k.places]
    worst = max((a.severity for a in k.alerts), key=SEVERITY_RANK.__getitem__, default="low")
    return "".join(
        [
            f'<section class="key" id="key-{_e(k.key_id)}">',
            f'<h2>Key <code>{_e(k.key_id)}</code> <span class="sev {_e(worst)}">'
            f"{_e(worst)}</span></h2>",
            f'<p class="meta">account {_e(k.account_id or "-")}; {len(k.alerts)} alert(s); '
            f"usual hours: {_e(usual_hours_text(k.usual_hours))}</p>",
            rate_chart(k),
            "<h3>First seen from</h3>",
            _table(
                ["time (UTC)", "what", "where"],
                [[iso(ts), kind, label] for ts, kind, label in k.firsts],
                "No located requests.",
            ),
            "<h3>Alerts</h3>",
            _table(["time (UTC)", "severity", "action", "signals", "summary"], alert_rows, ""),
            "<h3>Locations</h3>",
            _table(["country", "city", "requests", "share"], place_rows, "No located requests."),
            "<h3>Impossible-travel hops</h3>",
            _table(
                ["at (UTC)", "from", "to", "km", "seconds", "km/h"],
                [_hop_row(h) for h in k.hops],
                "None.",
            ),
            "</section>",
        ]
    )


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:980px}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-top:1px solid #ccc;padding-top:12px}
h3{font-size:14px;margin:14px 0 4px}code{font-size:15px}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #ddd;padding:2px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.none,.meta{color:#666}
.chart{display:block;background:#fcfcfc;border:1px solid #eee}
.grid{stroke:#e4e4e4;stroke-width:1}.tick{font-size:10px;fill:#777}
.obs{fill:none;stroke:#1f5fa8;stroke-width:1.3}
.base{fill:none;stroke:#888;stroke-width:1.3;stroke-dasharray:4 3}
.alert{stroke:#d33;stroke-width:2;opacity:.75}.alert.low,.alert.medium{stroke:#e8a33d}
.usual{fill:#e6f2e6}.first{fill:#555}.first.network{fill:#8a5cc7}
.worst{color:#444}
.sev{font-size:12px;padding:1px 6px;border-radius:3px;background:#eee}
.sev.critical{background:#d33;color:#fff}.sev.high{background:#e8703d;color:#fff}
.sev.medium{background:#e8a33d}
"""


def _index_entry(k: KeyReport) -> str:
    """One line of the index: the key, its worst alert (severity, action, summary), a count."""
    w = k.worst
    if w is None:
        return f'<li><a href="#key-{_e(k.key_id)}">{_e(k.key_id)}</a></li>'
    return (
        f'<li><span class="sev {_e(w.severity)}">{_e(w.severity)}</span> '
        f'<a href="#key-{_e(k.key_id)}">{_e(k.key_id)}</a> '
        f'<span class="worst">{_e(w.action)}: {_e(w.summary)} ({_e(iso(w.ts))})</span>'
        f" ({len(k.alerts)} alert(s))</li>"
    )


def render(keys: Sequence[KeyReport], summary: Sequence[str], title: str = "") -> str:
    """The whole page: the replay summary, then one section per alerted key."""
    heading = title or "keywatch replay report"
    lines = "".join(f"<li>{_e(s)}</li>" for s in summary)
    keys = by_severity(keys)
    index = "".join(_index_entry(k) for k in keys)
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_e(heading)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_e(heading)}</h1><h2>Summary</h2><ul>{lines}</ul>",
            f'<h2>Alerted keys ({len(keys)}), most severe first</h2><ul class="index">{index}</ul>'
            if keys
            else "",
            *(key_section(k) for k in keys),
            "</body></html>\n",
        ]
    )

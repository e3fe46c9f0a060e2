"""The replay report: self-contained HTML, everything escaped, one section per alerted key."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import ClassVar

import pytest

from detectors.model import Alert, Signal
from worker.report import KeyReport, rate_chart, render

HOUR = 3600
START_H = 1793577600 // HOUR  # 2026-11-02T00:00Z


def alert(key_id: str, hour: int, summary: str, severity: str = "critical") -> Alert:
    travel = Signal(
        "geo.impossible_travel",
        "high",
        {"from": {"place": "DE/Dresden"}, "to": {"place": "JP/<Tokyo>"}, "distance_km": 9000,
         "elapsed_s": 60.0, "speed_kmh": 540000},
    )  # fmt: skip
    return Alert(
        id=f"01{key_id}{hour}",
        kind="anomaly",
        key_id=key_id,
        account_id="acme & co",
        ts=(START_H + hour) * HOUR + 60.0,
        detected_at=(START_H + hour) * HOUR + 61.0,
        severity=severity,  # type: ignore[arg-type]
        action="revoke",
        signals=[travel],
        summary=summary,
    )


def key(key_id: str, city: str = "Dresden", summary: str = "used from RU (new)") -> KeyReport:
    hours = 72
    hourly = [10 + (h % 24) for h in range(hours)]
    hourly[60] = 900
    baseline: list[float | None] = [None] * 24 + [10.0 + (h % 24) for h in range(24, hours)]
    a = alert(key_id, 60, summary)
    return KeyReport(
        key_id=key_id,
        account_id="acme & co",
        first_hour=START_H,
        hourly=hourly,
        baseline=baseline,
        alerts=[a],
        places=[("DE", city, 1500), ("RU", "Moscow", 40)],
        hops=[{**a.signals[0].evidence, "at": "2026-11-04T12:01:00.000Z"}],
    )


class Collector(HTMLParser):
    """Every start tag with its attributes, and whether the document nests properly."""

    VOID: ClassVar[set[str]] = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Collector:
    c = Collector()
    c.feed(page)
    c.close()
    assert c.stack == [], f"unclosed: {c.stack}"
    return c


def test_one_section_per_key_with_chart_locations_and_hops() -> None:
    page = render([key("aa11"), key("bb22")], ["alerts: 2", "by action: revoke 2"])
    doc = parse(page)
    sections = [a for t, a in doc.tags if t == "section"]
    assert [s["id"] for s in sections] == ["key-aa11", "key-bb22"]
    assert sum(t == "svg" for t, _ in doc.tags) == 2
    text = " ".join(doc.text)
    assert "alerts: 2" in text and "DE/Dresden" in text and "540000" in text
    assert "Moscow" in text and "97.4%" in text  # share of located requests


def test_self_contained() -> None:
    doc = parse(render([key("aa11")], ["x"]))
    tags = {t for t, _ in doc.tags}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    for _, attrs in doc.tags:
        assert not any(v and re.match(r"(https?:)?//", v) for v in attrs.values())
        assert "src" not in attrs


@pytest.mark.parametrize(
    "field",
    ["key_id", "city", "summary"],
)
def test_everything_is_escaped(field: str) -> None:
    evil = '<script>alert("x")</script>&"'
    kr = key(evil) if field == "key_id" else key("k1", **{field: evil})
    page = render([kr], [evil])
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    parse(page)  # still well formed


def test_chart_marks_alerts_and_breaks_unknown_baseline() -> None:
    svg = rate_chart(key("k1"))
    assert svg.count('class="alert critical"') == 1
    base = re.search(r'class="base" d="([^"]+)"', svg)
    obs = re.search(r'class="obs" d="([^"]+)"', svg)
    assert base and obs
    assert obs.group(1).count("M") == 1 and obs.group(1).count("L") == 71  # 72 hours, one line
    assert base.group(1).count("L") == 47  # 24 unknown hours skipped: 48 points
    # the spike hour is the highest point of the observed line (smallest y)
    ys = [float(p.split(",")[1]) for p in re.findall(r"[ML]([\d.]+,[\d.]+)", obs.group(1))]
    assert ys.index(min(ys)) == 60


def test_empty_report() -> None:
    doc = parse(render([], ["alerts: 0"]))
    assert not [t for t, _ in doc.tags if t == "section"]
    assert "alerts: 0" in " ".join(doc.text)

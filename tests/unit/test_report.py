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
    # a step per hour: two points each, one line
    assert obs.group(1).count("M") == 1 and obs.group(1).count("L") == 143  # 72 hours
    assert base.group(1).count("M") == 1 and base.group(1).count("L") == 95  # 24 unknown skipped
    # the spike hour is the highest step of the observed line (smallest y)
    ys = [float(p.split(",")[1]) for p in re.findall(r"[ML]([\d.]+,[\d.]+)", obs.group(1))]
    assert ys.index(min(ys)) == 120 and ys[121] == min(ys)


def test_empty_report() -> None:
    doc = parse(render([], ["alerts: 0"]))
    assert not [t for t, _ in doc.tags if t == "section"]
    assert "alerts: 0" in " ".join(doc.text)


AXIS_Y = 240 - 34  # the chart's bottom (_H - _PAD_B): zero requests


def test_hours_without_traffic_lie_on_the_axis() -> None:
    k = key("k1")
    k.hourly[30:40] = [0] * 10  # e.g. the key was revoked, or the service was down
    obs = re.search(r'class="obs" d="([^"]+)"', rate_chart(k))
    assert obs
    points = re.findall(r"[ML]([\d.]+),([\d.]+)", obs.group(1))
    zero_steps = [float(y) for _, y in points[60:80]]  # hours 30-39: two points each
    assert zero_steps == [AXIS_Y] * 20
    assert float(points[58][1]) < AXIS_Y and float(points[80][1]) < AXIS_Y


def test_usual_hours_band_and_first_sightings() -> None:
    k = key("k1")
    k.usual_hours = sum(1 << h for h in range(8, 18))  # 08:00-18:00 UTC
    k.firsts = [((START_H + 1) * HOUR, "country", "DE/Dresden"),
                ((START_H + 60) * HOUR, "country", "RU/Moscow"),
                ((START_H + 60) * HOUR + 5, "network", "AS8359 MTS <PJSC>")]  # fmt: skip
    svg = rate_chart(k)
    assert svg.count('class="usual"') == 3  # three days, one band each
    assert svg.count('class="first country"') == 2 and svg.count('class="first network"') == 1
    page = render([k], ["x"])
    assert "usual hours: 08:00-18:00 UTC" in page
    assert "AS8359 MTS &lt;PJSC&gt;" in page and "<PJSC>" not in page
    assert page.index("DE/Dresden") < page.index("RU/Moscow")
    learning = key("k2")  # still learning: no band, said in words
    assert 'class="usual"' not in rate_chart(learning)
    assert "not learned yet" in render([learning], ["x"])


def test_index_orders_keys_by_severity_with_their_worst_alert() -> None:
    low, crit, high = key("low1"), key("crit1"), key("high1")
    low.alerts = [alert("low1", 10, "off hours", "low")]
    high.alerts = [alert("high1", 20, "spike", "high"), alert("high1", 30, "travel", "medium")]
    crit.alerts = [alert("crit1", 5, "first", "medium"), alert("crit1", 61, "compromised")]
    page = render([low, crit, high], ["x"])
    index = page[page.index('<ul class="index">') : page.index("</ul>", page.index('"index"'))]
    assert index.index("crit1") < index.index("high1") < index.index("low1")
    assert "revoke: compromised" in index and "revoke: spike" in index  # each key's worst
    assert "first" not in index
    sections = [m.group(1) for m in re.finditer(r'<section class="key" id="key-(\w+)"', page)]
    assert sections == ["crit1", "high1", "low1"]

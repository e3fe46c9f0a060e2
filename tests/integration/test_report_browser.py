"""The replay report as a person sees it: rendered by a real headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.browser import Browser
from tests.support.procs import ROOT

SEVERITY = {"low": 0, "medium": 1, "high": 2, "critical": 3}
AXIS_Y = 240 - 34  # the plot's bottom: zero requests

MEASURE = """(() => {
  const text = (e) => e.textContent.trim();
  const charts = Array.from(document.querySelectorAll('svg.chart')).map((svg) => {
    const box = svg.getBoundingClientRect();
    const obs = svg.querySelector('path.obs');
    const band = svg.querySelector('rect.usual');
    const alert = svg.querySelector('line.alert');
    return {
      width: box.width, height: box.height,
      obsLength: obs.getTotalLength(), obsBottom: obs.getBBox().y + obs.getBBox().height,
      bands: Array.from(svg.querySelectorAll('rect.usual')).map((r) => r.getBBox().width),
      bandFill: band ? getComputedStyle(band).fill : null,
      alertStroke: alert ? getComputedStyle(alert).stroke : null,
      firsts: svg.querySelectorAll('path.first').length,
    };
  });
  const timelines = Array.from(document.querySelectorAll('section.key')).map((s) => {
    const h = Array.from(s.querySelectorAll('h3')).find((e) => text(e) === 'First seen from');
    const rows = h.nextElementSibling.querySelectorAll('tbody tr');
    return Array.from(rows).map((r) => text(r.cells[0]));
  });
  return {
    index: Array.from(document.querySelectorAll('ul.index li')).map((li) => ({
      severity: text(li.querySelector('.sev')), href: li.querySelector('a').getAttribute('href'),
      worst: text(li.querySelector('.worst')),
    })),
    sections: Array.from(document.querySelectorAll('section.key')).map((s) => '#' + s.id),
    charts, timelines,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
})()"""


def _report(tmp_path: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWATCH_")}
    env["PYTHONPATH"] = str(ROOT)
    run = [sys.executable, "-m", "worker.cli"]
    traffic, report = tmp_path / "t.jsonl", tmp_path / "report.html"
    subprocess.run([*run, "simulate", "--keys", "12", "--days", "6", "--attacks", "1",
                    "--seed", "3", "--out", str(traffic)], env=env, check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    subprocess.run([*run, "replay", str(traffic), "--out", str(tmp_path / "a.jsonl"),
                    "--report", str(report)], env=env, check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    return report


@pytest.mark.timeout(240)
async def test_the_report_renders_in_chromium(tmp_path: Path) -> None:
    report = _report(tmp_path)
    async with Browser() as browser:
        await browser.load(report.as_uri())
        page = await browser.evaluate(MEASURE)
        assert browser.console_errors() == []
        assert browser.requests() == [report.as_uri()]  # self-contained: nothing else fetched

    index = page["index"]
    assert len(index) >= 3, page
    ranks = [SEVERITY[entry["severity"]] for entry in index]
    assert ranks == sorted(ranks, reverse=True)  # most severe first
    assert [entry["href"] for entry in index] == page["sections"]  # same order as the sections
    assert all(": Key " in entry["worst"] for entry in index)  # "action: summary (time)"
    assert page["overflow"] <= 0  # nothing wider than the window

    for chart in page["charts"]:
        assert chart["width"] >= 920 and chart["height"] >= 250  # drawn at full size (+ border)
        assert chart["obsLength"] > 1000
        # nights without traffic: the observed steps come down to the axis, not above it
        assert abs(chart["obsBottom"] - AXIS_Y) < 0.5
        assert chart["alertStroke"] in ("rgb(221, 51, 51)", "rgb(232, 163, 61)")
        assert chart["firsts"] >= 1
    banded = [c for c in page["charts"] if c["bands"]]
    assert banded, "no chart shows a usual-hours band"
    for chart in banded:
        assert chart["bandFill"] == "rgb(230, 242, 230)"
        assert all(width > 0 for width in chart["bands"])
    for times in page["timelines"]:
        assert times and times == sorted(times)

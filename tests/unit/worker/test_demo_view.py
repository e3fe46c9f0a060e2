"""The demo's dashboard wording: event-time order, hidden counts, whole words, durations."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from worker.demo_view import DemoState, duration, finish_lines, latest_alerts, render, shorten


@pytest.mark.parametrize(
    "seconds, shown",
    [(3600, "1h"), (5400, "1h 30m"), (90, "1m 30s"), (86400 * 2 + 60, "2d 1m"), (0.4, "0s"),
     (None, "-"), (900.0, "15m")],
)  # fmt: skip
def test_duration(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


def test_shorten_never_cuts_a_word() -> None:
    reason = "keywatch critical anomaly: geo.new_country+time.off_hours (alert 01JDABCDEF)"
    short = shorten(reason, 50)
    assert short.endswith(" …") and len(short) <= 50
    assert all(word in reason.split() for word in short.removesuffix(" …").split())


def _alert(ts: str, key: str = "k1", sev: str = "high") -> dict[str, object]:
    return {"id": ts, "ts": ts, "key_id": key, "severity": sev, "action": "throttle",
            "summary": f"alert at {ts}"}  # fmt: skip


def test_latest_alerts_by_event_time_with_hidden_count() -> None:
    # arrival order is not event-time order (partitions, replays)
    arrived = [_alert(f"2026-11-1{d}T00:00:00Z") for d in (5, 1, 9, 3, 7)]
    shown, hidden = latest_alerts(arrived, total=7, n=3)
    assert [a["ts"][:10] for a in shown] == ["2026-11-15", "2026-11-17", "2026-11-19"]
    assert hidden == 4  # two older kept ones and two the state no longer keeps


def test_dashboard_and_finish_summary() -> None:
    state = DemoState()
    for d in range(9, -1, -1):
        state.add_alert(_alert(f"2026-11-1{d}T03:00:00Z", "k1" if d else "k2", "critical"))
    state.add_action({"key_id": "k1", "action": "throttle", "ttl_s": 5400, "reason": "spike"})
    state.add_action({"key_id": "k2", "action": "revoke", "reason": "compromised"})
    state.published, state.events, state.published_all = 100, 100, True
    assert not state.settled(quiet_s=60) and state.settled(quiet_s=0)
    state.finished_s = 12.0
    console = Console(width=160, record=True)
    console.print(render(state, {"k1": "acme", "k2": "globex"}))
    text = console.export_text()
    assert "demo finished: 100 events from 2 keys processed in 12 s" in text
    assert "4 earlier alert(s) not shown" in text  # 6 rows once finished
    assert text.index("2026-11-14 03:00:00") < text.index("2026-11-19 03:00:00")
    assert "1h 30m" in text and "k2 (globex)" in text
    lines = finish_lines(state, {"k1": "acme", "k2": "globex"}, None, 6066)
    assert "  alerts: 10 (10 critical)" in lines
    assert any(line.startswith("  revoked: k2 (globex)") for line in lines)
    assert "  throttled: k1 (acme) for 1h 30m" in lines
    assert any("keywatch keys show k2" in line for line in lines)
    assert any(line.endswith("the keys, one of them revoked") for line in lines)
    assert lines[-1] == "The stack keeps running; Ctrl-C stops it."
    assert time.monotonic() - state.started < 60


def test_http_answers_per_key_and_their_changes() -> None:
    """The live HTTP panel: counts per key, the 200 -> 429/401 changes, the summary line."""
    state = DemoState()
    state.http.api_url = "http://127.0.0.1:8080"
    state.http.done = False
    state.published, state.events, state.published_all = 10, 10, True
    assert not state.settled(quiet_s=0)  # live requests still due
    for status, code in [(200, ""), (200, ""), (429, "api_key_throttled"), (429, "")]:
        state.http.record("k1", status, code)
    for status, code in [(200, ""), (401, "api_key_revoked")]:
        state.http.record("k2", status, code)
    state.http.done = True
    assert state.settled(quiet_s=0)
    assert state.http.changes == [("k1", 200, 429, "api_key_throttled", 2),
                                  ("k2", 200, 401, "api_key_revoked", 1)]  # fmt: skip
    assert state.http.total() == {200: 3, 429: 2, 401: 1}
    console = Console(width=160, record=True)
    console.print(render(state, {"k1": "acme", "k2": "globex"}))
    text = console.export_text()
    assert "HTTP through the gateway (http://127.0.0.1:8080)" in text
    assert "200 -> 401 api_key_revoked after 1" in text
    lines = finish_lines(state, {"k1": "acme", "k2": "globex"}, None)
    assert "  HTTP through the gateway (http://127.0.0.1:8080): 3 x 200, 1 x 401, 2 x 429" in lines
    assert "    k1 (acme): 200 -> 429 api_key_throttled after 2" in lines


@pytest.mark.parametrize(
    "revoked, phrase",
    [((), "none revoked"), (("k2",), "one of them revoked"), (("k1", "k2"), "2 of them revoked")],
)
def test_finish_summary_counts_the_revoked_keys(revoked: tuple[str, ...], phrase: str) -> None:
    state = DemoState()
    for key in revoked:
        state.add_action({"key_id": key, "action": "revoke", "reason": "compromised"})
    lines = finish_lines(state, {"k1": "acme", "k2": "globex"}, None, 6066)
    assert any(line.endswith(f"the keys, {phrase}") for line in lines)

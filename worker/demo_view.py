"""What ``keywatch dev --demo`` shows: the live dashboard and the closing summary.

Pure functions of ``DemoState`` (no I/O), so the wording is tested without a stack: alerts in
event-time order with a count of those not shown, reasons shortened at word boundaries, TTLs as
durations, and a "demo finished" panel saying what happened and what to try next.
"""

from __future__ import annotations

import importlib.util
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from worker.demo_live import HttpStats

SHOWN_ALERTS, SHOWN_ACTIONS, KEPT = 12, 10, 1000
COLOUR = {"low": "dim", "medium": "cyan", "high": "yellow", "critical": "bold red"}


@dataclass
class DemoState:
    """What the demo has seen so far (appended by the followers, read by the views)."""

    published: int = 0
    published_all: bool = False
    events: float = 0.0
    rate: float = 0.0
    alerts: list[dict[str, Any]] = field(default_factory=list)  # arrival order, last KEPT
    actions: list[dict[str, Any]] = field(default_factory=list)
    alert_count: int = 0
    action_count: int = 0
    revoked: dict[str, float] = field(default_factory=dict)  # key id -> seconds into the demo
    throttled: dict[str, float | None] = field(default_factory=dict)  # key id -> ttl_s
    started: float = field(default_factory=time.monotonic)
    last_change: float = field(default_factory=time.monotonic)
    first_revoke_s: float | None = None
    finished_s: float | None = None
    http: HttpStats = field(default_factory=HttpStats)  # the live HTTP clients' answers

    def add_alert(self, alert: dict[str, Any]) -> None:
        """Record an alert from ``keywatch.alerts``."""
        self.alerts = [*self.alerts[-(KEPT - 1) :], alert]
        self.alert_count += 1
        self.last_change = time.monotonic()

    def add_action(self, action: dict[str, Any]) -> None:
        """Record a key action from ``keywatch.key-actions``."""
        self.actions = [*self.actions[-(KEPT - 1) :], action]
        self.action_count += 1
        self.last_change = time.monotonic()
        key_id = str(action.get("key_id", ""))
        if action.get("action") == "revoke" and key_id not in self.revoked:
            self.revoked[key_id] = time.monotonic() - self.started
            if self.first_revoke_s is None:
                self.first_revoke_s = self.revoked[key_id]
        elif action.get("action") == "throttle":
            ttl = action.get("ttl_s")
            self.throttled[key_id] = float(ttl) if ttl is not None else None

    def settled(self, quiet_s: float = 5.0) -> bool:
        """Everything published was processed and nothing happened for ``quiet_s`` seconds."""
        return (
            self.published_all
            and self.http.done
            and self.events >= self.published
            and time.monotonic() - self.last_change >= quiet_s
        )


def duration(seconds: float | None) -> str:
    """``3600`` -> ``1h``, ``5400`` -> ``1h 30m``, ``90`` -> ``1m 30s``; None -> ``-``."""
    if seconds is None:
        return "-"
    left = round(float(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2]) or "0s"


def shorten(text: object, width: int) -> str:
    """Shorten at a word boundary with an ellipsis (never in the middle of a word)."""
    return textwrap.shorten(str(text or ""), width=width, placeholder=" …")


def latest_alerts(
    alerts: list[dict[str, Any]], total: int, n: int = SHOWN_ALERTS
) -> tuple[list[dict[str, Any]], int]:
    """The ``n`` alerts with the latest event times, oldest first, and how many are not shown."""
    ordered = sorted(alerts, key=lambda a: (str(a.get("ts", "")), str(a.get("id", ""))))
    shown = ordered[-n:]
    return shown, total - len(shown)


def _who(key_id: str, names: dict[str, str]) -> str:
    return f"{key_id} ({names.get(key_id, '?')})"


def render(state: DemoState, names: dict[str, str], sink: Any = None, web_port: int = 0) -> Group:
    """The live dashboard."""
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"published [bold]{state.published:,}[/]", f"processed [bold]{state.events:,.0f}[/]",
        f"[bold]{state.rate:,.0f}[/] events/s", f"alerts [bold]{state.alert_count}[/]",
        f"throttled [yellow]{len(state.throttled)}[/]", f"revoked [red]{len(state.revoked)}[/]",
    )  # fmt: skip
    done = state.finished_s is not None  # then the summary needs the room
    shown, hidden = latest_alerts(state.alerts, state.alert_count, 6 if done else SHOWN_ALERTS)
    alerts = Table("event time (UTC)", "key", "severity", "action", "summary", expand=True)
    for a in shown:
        sev = str(a.get("severity", ""))
        alerts.add_row(str(a.get("ts", ""))[:19].replace("T", " "),
                       _who(str(a.get("key_id", "")), names),
                       f"[{COLOUR.get(sev, '')}]{sev}[/]", str(a.get("action", "")),
                       str(a.get("summary", "")))  # fmt: skip
    if hidden:
        alerts.caption = f"{hidden} earlier alert(s) not shown (by event time)"
    actions = Table("key", "action", "reason", "for", expand=True)
    n_actions = 4 if done else SHOWN_ACTIONS
    for act in state.actions[-n_actions:]:
        ttl = act.get("ttl_s")
        actions.add_row(_who(str(act.get("key_id", "")), names), str(act.get("action", "")),
                        shorten(act.get("reason"), 110),
                        duration(float(ttl)) if ttl is not None else "-")  # fmt: skip
    if state.action_count > n_actions:
        actions.caption = f"{state.action_count - n_actions} earlier action(s) not shown"
    parts: list[Any] = [Panel(head, title="keywatch demo (Ctrl-C to stop)")]
    if done:
        text = "\n".join(finish_lines(state, names, sink, web_port))
        parts.append(Panel(text, title="demo finished", border_style="green"))
    parts += [Panel(alerts, title="alerts (keywatch.alerts), in event-time order")]
    parts += [Panel(actions, title="key actions (keywatch.key-actions)")]
    if state.http.api_url:
        parts.append(http_panel(state.http, names))
    if sink is not None:
        last = sink.messages[-1].get("text", "") if sink.messages else "none yet"
        title = "Slack (local sink: KEYWATCH_SLACK_WEBHOOK_URL not set)"
        parts.append(
            Panel(f"{sink.count} message(s) at {sink.url}\nlast: {shorten(last, 160)}", title=title)
        )
    if state.first_revoke_s is not None:
        parts.append(
            f"[bold red]first revocation {state.first_revoke_s:.1f}s after the demo began[/]"
        )
    return Group(*parts)


def http_panel(http: HttpStats, names: dict[str, str]) -> Panel:
    """HTTP answers per key as the demo's clients got them from the gateway."""
    table = Table("key", "200", "429", "401", "other", "last change", expand=True)
    last = {key_id: f"{a} -> {b} {code} after {n}" for key_id, a, b, code, n in http.changes}
    for key_id, counts in sorted(http.counts.items(), key=lambda kv: names.get(kv[0], "")):
        other = sum(n for status, n in counts.items() if status not in (200, 429, 401))
        table.add_row(_who(key_id, names), str(counts[200]), f"[yellow]{counts[429]}[/]",
                      f"[red]{counts[401]}[/]", str(other), last.get(key_id, ""))  # fmt: skip
    if not http.started:
        table.caption = "starts once the history is processed"
    return Panel(table, title=f"HTTP through the gateway ({http.api_url})")


def finish_lines(
    state: DemoState, names: dict[str, str], sink: Any, web_port: int = 0
) -> list[str]:
    """The closing summary: what happened, then what to try next."""
    by_sev = Counter(str(a.get("severity")) for a in state.alerts)
    sev = ", ".join(f"{by_sev[s]} {s}" for s in ("critical", "high", "medium", "low") if by_sev[s])
    lines = [
        f"demo finished: {state.events:,.0f} events from {len(names)} keys processed in "
        f"{state.finished_s or 0:.0f} s",
        f"  alerts: {state.alert_count}" + (f" ({sev})" if sev else ""),
    ]
    for key_id, at in state.revoked.items():
        why = next((a.get("summary") for a in reversed(state.alerts)
                    if a.get("key_id") == key_id and a.get("action") == "revoke"), "")  # fmt: skip
        lines.append(f"  revoked: {_who(key_id, names)} {at:.1f} s into the demo: {why}")
    for key_id, ttl in state.throttled.items():
        if key_id not in state.revoked:
            lines.append(f"  throttled: {_who(key_id, names)} for {duration(ttl)}")
    if sink is not None:
        lines.append(f"  Slack: {sink.count} message(s) to the local sink {sink.url}")
    if state.http.api_url:
        total = state.http.total()
        by_status = ", ".join(f"{n} x {status}" for status, n in sorted(total.items()))
        lines.append(f"  HTTP through the gateway ({state.http.api_url}): {by_status or 'none'}")
        for key_id, before, after, code, n in state.http.changes:
            lines.append(f"    {_who(key_id, names)}: {before} -> {after} {code} after {n}")
    revoked = next(iter(state.revoked), "KEY_ID")
    lines += [
        "what to try next, in another terminal in this directory (it uses .keywatch/dev/env):",
        f"  keywatch keys list                    the keys, {_revoked_phrase(len(state.revoked))}",
        f"  keywatch keys show {revoked}   why and when",
    ]
    if importlib.util.find_spec("worker.commands.alerts") is not None:
        lines.append("  keywatch alerts list                  the alerts, to resolve them")
    lines += [
        "  keywatch simulate --keys 20 --days 5 --attacks 1 --topic gateway.access",
        "                                        more traffic with attacks: watch it here",
        "  keywatch simulate --keys 50 --days 7 --attacks 2 --out t.jsonl && "
        "keywatch replay t.jsonl --report report.html",
        "                                        the same detection offline, explained in HTML",
    ]
    if web_port:
        lines.append(f"  curl http://127.0.0.1:{web_port}/metrics   the worker's counters")
    if state.http.api_url:
        lines.append(f"  curl -H 'Authorization: Bearer <a key from keys create>' "
                     f"{state.http.api_url}/v1/users")  # fmt: skip
    lines.append("The stack keeps running; Ctrl-C stops it.")
    return lines


def _revoked_phrase(n: int) -> str:
    """How many of the demo's keys the summary's reader will find revoked."""
    return "none revoked" if n == 0 else "one of them revoked" if n == 1 else f"{n} of them revoked"

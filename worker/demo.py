"""``keywatch dev --demo``: issue keys, replay simulated history and attacks, watch keywatch act.

The demo runs against the dev stack (embedded broker, SQLite, worker, scanner). It issues a few
keys, publishes ten days of simulated traffic for them to ``gateway.access`` (event time runs
fast: detection uses event time only) with a spike and a compromise on the last days, and shows
live in the terminal: events/s, alerts as they fire, throttles and revocations, and the Slack
messages a local sink received (when KEYWATCH_SLACK_WEBHOOK_URL is not set).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from worker.devstack import DevStack
from worker.keystore.store import KeyStore
from worker.settings import Topics
from worker.simulate import simulate

DEMO_ATTACKS = {"spike": 1, "compromise": 1, "new_country": 1}
DEMO_KEYS, DEMO_DAYS, BATCH = 8, 10, 200
TOPICS = Topics()  # keywatch dev uses the default topic names
_EVENTS_RE = re.compile(r"^keywatch_events_total\{[^}]*\} ([0-9.e+]+)$", re.M)


class SlackSink:
    """A local stand-in for Slack's incoming webhook: records what keywatch would post."""

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] = deque(maxlen=50)
        self.count = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with contextlib.suppress(ValueError):
                    sink.messages.append(json.loads(body))
                    sink.count += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/demo"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class DemoState:
    """What the live view shows."""

    published: int = 0
    events: float = 0.0
    rate: float = 0.0
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=12))
    actions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10))
    alert_count: int = 0
    action_count: int = 0
    revoked: set[str] = field(default_factory=set)
    throttled: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)
    first_revoke_s: float | None = None


def run_demo(stack: DevStack, sink: SlackSink | None = None) -> None:
    """Drive the demo until Ctrl-C."""
    asyncio.run(_demo(stack, sink))


async def _demo(stack: DevStack, sink: SlackSink | None) -> None:
    state = DemoState()
    names = _issue_keys(stack)
    tasks = [
        asyncio.create_task(_publish(stack, names, state)),
        asyncio.create_task(_follow(stack, state)),
        asyncio.create_task(_scrape(stack, state)),
    ]
    try:
        if sys.stdout.isatty():
            with Live(_render(state, names, sink), refresh_per_second=4, screen=False) as live:
                while stack.healthy():
                    live.update(_render(state, names, sink))
                    await asyncio.sleep(0.25)
        else:  # a pipe or a file: one plain line per alert and action, as they happen
            await _print_lines(stack, state, names, sink)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _print_lines(
    stack: DevStack, state: DemoState, names: dict[str, str], sink: SlackSink | None
) -> None:
    alerts_seen = actions_seen = slack_seen = 0
    revoke_told = False
    while stack.healthy():
        for a in _newest(state.alerts, state.alert_count - alerts_seen):
            who = names.get(a.get("key_id", ""), "?")
            print(f"alert  {a.get('severity')}/{a.get('action')} {a.get('key_id')} ({who}): "
                  f"{a.get('summary')}", flush=True)  # fmt: skip
        for act in _newest(state.actions, state.action_count - actions_seen):
            print(
                f"action {act.get('action')} {act.get('key_id')}: {act.get('reason')}", flush=True
            )
        alerts_seen, actions_seen = state.alert_count, state.action_count
        if sink is not None:
            for msg in (
                list(sink.messages)[-max(0, sink.count - slack_seen) :]
                if sink.count > slack_seen
                else []
            ):
                print(f"slack  ({sink.url}) {msg.get('text', '')}", flush=True)
            slack_seen = sink.count
        if state.first_revoke_s is not None and not revoke_told:
            print(f"first revocation {state.first_revoke_s:.1f}s after the demo began", flush=True)
            revoke_told = True
        await asyncio.sleep(0.25)


def _newest(items: deque[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` newest entries of a newest-first deque, oldest first."""
    return list(items)[: max(0, count)][::-1]


def _issue_keys(stack: DevStack) -> dict[str, str]:
    """Issue the demo keys; returns key id -> account name (the secrets are discarded)."""
    store = KeyStore(stack.database_url)
    try:
        accounts = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"]
        ids: dict[str, str] = {}
        for account in accounts[:DEMO_KEYS]:
            _secret, record = store.create(account, "live", contact=f"security@{account}.test")
            ids[record.key_id] = account
        return ids
    finally:
        store.close()


async def _publish(stack: DevStack, names: dict[str, str], state: DemoState) -> None:
    sim = simulate(keys=DEMO_KEYS, days=DEMO_DAYS, attacks=DEMO_ATTACKS, seed=7)
    mapping = dict(zip((p.key_id for p in sim.keys), names, strict=True))
    producer = AIOKafkaProducer(bootstrap_servers=stack.broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        batch: list[dict[str, Any]] = []
        for event in sim.events(ts_format="ms"):
            event["key_id"] = mapping[event["key_id"]]
            batch.append(event)
            if len(batch) == BATCH:
                await producer.send(TOPICS.access, orjson.dumps(batch))
                state.published += len(batch)
                batch = []
                await asyncio.sleep(0)
        if batch:
            await producer.send(TOPICS.access, orjson.dumps(batch))
            state.published += len(batch)
        await producer.flush()
    finally:
        await producer.stop()


async def _follow(stack: DevStack, state: DemoState) -> None:
    consumer = AIOKafkaConsumer(
        TOPICS.alerts, TOPICS.key_actions, bootstrap_servers=stack.broker.bootstrap,
        auto_offset_reset="earliest", group_id=None,
    )  # fmt: skip
    await consumer.start()
    try:
        async for msg in consumer:
            body = orjson.loads(msg.value)
            if msg.topic == TOPICS.alerts:
                state.alerts.appendleft(body)
                state.alert_count += 1
                continue
            state.actions.appendleft(body)
            state.action_count += 1
            if body.get("action") == "revoke":
                state.revoked.add(body["key_id"])
                if state.first_revoke_s is None:
                    state.first_revoke_s = time.monotonic() - state.started
            elif body.get("action") == "throttle":
                state.throttled.add(body["key_id"])
    finally:
        await consumer.stop()


async def _scrape(stack: DevStack, state: DemoState) -> None:
    url = f"http://127.0.0.1:{stack.web_port}/metrics"
    last, last_t = 0.0, time.monotonic()
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                text = (await client.get(url)).text
                total = sum(float(v) for v in _EVENTS_RE.findall(text))
                now = time.monotonic()
                state.rate = (total - last) / max(1e-3, now - last_t)
                state.events, last, last_t = total, total, now
            await asyncio.sleep(1.0)


def _render(state: DemoState, names: dict[str, str], sink: SlackSink | None) -> Group:
    head = Table.grid(padding=(0, 3))
    head.add_row(
        f"published [bold]{state.published:,}[/]", f"processed [bold]{state.events:,.0f}[/]",
        f"[bold]{state.rate:,.0f}[/] events/s", f"alerts [bold]{state.alert_count}[/]",
        f"throttled [yellow]{len(state.throttled)}[/]", f"revoked [red]{len(state.revoked)}[/]",
    )  # fmt: skip
    alerts = Table("event time", "key", "severity", "action", "summary", expand=True)
    colour = {"low": "dim", "medium": "cyan", "high": "yellow", "critical": "bold red"}
    for a in state.alerts:
        key = f"{a.get('key_id')} ({names.get(a.get('key_id', ''), '?')})"
        sev = a.get("severity", "")
        alerts.add_row(a.get("ts", "")[:19], key, f"[{colour.get(sev, '')}]{sev}[/]",
                       a.get("action", ""), a.get("summary", ""))  # fmt: skip
    actions = Table("key", "action", "reason", "ttl", expand=True)
    for act in state.actions:
        actions.add_row(act.get("key_id", ""), act.get("action", ""),
                        str(act.get("reason", ""))[:60], str(act.get("ttl_s", "")))  # fmt: skip
    parts: list[Any] = [Panel(head, title="keywatch demo (Ctrl-C to stop)")]
    parts += [Panel(alerts, title="alerts (keywatch.alerts)")]
    parts += [Panel(actions, title="key actions (keywatch.key-actions)")]
    if sink is not None:
        last = sink.messages[-1].get("text", "") if sink.messages else "none yet"
        title = "Slack (local sink: KEYWATCH_SLACK_WEBHOOK_URL not set)"
        parts.append(Panel(f"{sink.count} message(s) at {sink.url}\nlast: {last}", title=title))
    if state.first_revoke_s is not None:
        parts.append(
            f"[bold red]first revocation {state.first_revoke_s:.1f}s after the demo began[/]"
        )
    return Group(*parts)

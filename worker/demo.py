"""``keywatch dev --demo``: issue keys, replay simulated history and attacks, watch keywatch act.

The demo runs against the dev stack (embedded broker, SQLite, worker, scanner). It issues a few
keys, publishes ten days of simulated traffic for them to ``gateway.access`` (event time runs
fast: detection uses event time only) with a spike and a compromise on the last days, and shows
live in the terminal: events/s, alerts as they fire, throttles and revocations, and the Slack
messages a local sink received (when KEYWATCH_SLACK_WEBHOOK_URL is not set). Once the traffic is
processed it says what happened and what to try next; the stack runs on until Ctrl-C. The view
itself is ``worker.demo_view``.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.live import Live

from worker.demo_view import DemoState, duration, finish_lines, render, shorten
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
            with Live(
                render(state, names, sink, stack.web_port), refresh_per_second=4, screen=False
            ) as live:
                while stack.healthy():
                    _check_finished(state)
                    live.update(render(state, names, sink, stack.web_port))
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
    revoke_told = finish_told = False
    while stack.healthy():
        for a in _newest(state.alerts, state.alert_count - alerts_seen):
            who = names.get(a.get("key_id", ""), "?")
            print(f"alert  {a.get('ts')} {a.get('severity')}/{a.get('action')} {a.get('key_id')} "
                  f"({who}): {a.get('summary')}", flush=True)  # fmt: skip
        for act in _newest(state.actions, state.action_count - actions_seen):
            ttl = act.get("ttl_s")
            span = f" for {duration(float(ttl))}" if ttl is not None else ""
            print(f"action {act.get('action')} {act.get('key_id')}{span}: "
                  f"{shorten(act.get('reason'), 100)}", flush=True)  # fmt: skip
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
        if _check_finished(state) and not finish_told:
            print("\n".join(finish_lines(state, names, sink, stack.web_port)), flush=True)
            finish_told = True
        await asyncio.sleep(0.25)


def _check_finished(state: DemoState) -> bool:
    """Mark the demo finished once its traffic is processed and things are quiet."""
    if state.finished_s is None and state.settled():
        state.finished_s = time.monotonic() - state.started
    return state.finished_s is not None


def _newest(items: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` newest entries of an arrival-ordered list, oldest first."""
    return items[len(items) - min(max(0, count), len(items)) :]


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
    # One partition: the worker then reads the history in the order it happened, as a gateway
    # that keys its messages would deliver it; spread over partitions, a key's hours could
    # arrive interleaved out of order and the demo would differ from run to run.
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
                await producer.send(TOPICS.access, orjson.dumps(batch), partition=0)
                state.published += len(batch)
                batch = []
                await asyncio.sleep(0)
        if batch:
            await producer.send(TOPICS.access, orjson.dumps(batch), partition=0)
            state.published += len(batch)
        await producer.flush()
        state.published_all = True
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
                state.add_alert(body)
            else:
                state.add_action(body)
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

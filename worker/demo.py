"""``keywatch dev --demo``: keys, simulated history, attacks over HTTP; watch keywatch act.

The demo runs against the dev stack (embedded broker and Redis, SQLite, worker, scanner,
gateway) plus a sample API behind ``KeywatchMiddleware``. It issues a few keys and publishes
ten days of simulated history for them straight to ``gateway.access`` (event time runs fast:
detection uses event time only; tens of thousands of events over loopback HTTP would take
minutes). Then the live part (``worker.demo_live``) sends real HTTP requests with the keys
through the sample API, two of them attacks: the gateway publishes every decision, the worker
throttles one key and revokes the other, and the clients see 200s turn into 429s and 401s.
The terminal shows events/s, alerts, throttles and revocations, HTTP answers per key, and the
Slack messages a local sink received (when KEYWATCH_SLACK_WEBHOOK_URL is not set). Once
everything is processed it says what happened and what to try next; the stack runs on until
Ctrl-C. The view itself is ``worker.demo_view``.
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

from worker.demo_live import LivePlan, plan_live, run_live
from worker.demo_view import DemoState, duration, finish_lines, render, shorten
from worker.devstack import DevStack, free_port
from worker.keystore.store import KeyStore
from worker.settings import Topics
from worker.simulate import Simulation, simulate

DEMO_KEYS, DEMO_DAYS, BATCH, SEED = 8, 10, 200, 7
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


def add_sample_api(stack: DevStack) -> str:
    """Add the sample API behind ``KeywatchMiddleware`` to the stack (before ``start``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # The demo's clients are its own proxy: their X-Forwarded-For names the simulated caller.
    stack.add("api", ("--listen", f"127.0.0.1:{port}"), port,
              f"{url}/v1/users  (sample API behind KeywatchMiddleware)",
              module="gateway.sample_api", KEYWATCH_TRUSTED_PROXIES="1",
              KEYWATCH_GATEWAY_NAME="demo-api")  # fmt: skip
    return url


def run_demo(stack: DevStack, sink: SlackSink | None = None, api_url: str = "") -> None:
    """Drive the demo until Ctrl-C."""
    asyncio.run(_demo(stack, sink, api_url))


async def _demo(stack: DevStack, sink: SlackSink | None, api_url: str) -> None:
    state = DemoState()
    state.http.api_url = api_url
    names, secrets = _issue_keys(stack)
    sim = simulate(keys=DEMO_KEYS, days=DEMO_DAYS, seed=SEED)
    ids = dict(zip((p.key_id for p in sim.keys), names, strict=True))
    plan = plan_live(sim, ids, secrets)
    del secrets  # the live clients hold what they need
    ready = asyncio.Event()
    tasks = [
        asyncio.create_task(_publish(stack, sim, ids, plan, state, ready)),
        asyncio.create_task(_follow(stack, state)),
        asyncio.create_task(_scrape(stack, state)),
    ]
    if api_url:
        tasks.append(asyncio.create_task(run_live(plan, state.http, ready)))
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
    alerts_seen = actions_seen = slack_seen = http_seen = 0
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
        http = state.http
        for key_id, before, after, code, n in http.changes[http_seen:]:
            print(f"http   {key_id} ({names.get(key_id, '?')}): {before} -> {after} {code} "
                  f"after {n} request(s) through the gateway", flush=True)  # fmt: skip
        http_seen = len(http.changes)
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


def _issue_keys(stack: DevStack) -> tuple[dict[str, str], dict[str, str]]:
    """Issue the demo keys: key id -> account name, and key id -> key (kept in memory only,
    for the HTTP clients; never printed)."""
    store = KeyStore(stack.database_url)
    try:
        accounts = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"]
        ids: dict[str, str] = {}
        secrets: dict[str, str] = {}
        for account in accounts[:DEMO_KEYS]:
            secret, record = store.create(account, "live", contact=f"security@{account}.test")
            ids[record.key_id], secrets[record.key_id] = account, secret.secret
        return ids, secrets
    finally:
        store.close()


async def _publish(
    stack: DevStack, sim: Simulation, mapping: dict[str, str], live: LivePlan,
    state: DemoState, ready: asyncio.Event,
) -> None:  # fmt: skip
    # One partition: the worker then reads the history in the order it happened, as a gateway
    # that keys its messages would deliver it; spread over partitions, a key's hours could
    # arrive interleaved out of order and the demo would differ from run to run. The history
    # is shifted to end just before now, so the live HTTP traffic continues it in event time.
    shift_ms = round(live.offset_s * 1000)
    producer = AIOKafkaProducer(bootstrap_servers=stack.broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        batch: list[dict[str, Any]] = []
        for event in sim.events(ts_format="ms"):
            event["key_id"] = mapping[event["key_id"]]
            event["ts"] += shift_ms
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
    # Live requests only once the history is profiled: an event from "now" arriving first
    # would make the rest of its key's history late (profiles never rewrite closed hours).
    while state.events < state.published:  # noqa: ASYNC110 - a scraped counter, polled
        await asyncio.sleep(0.25)
    ready.set()


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

"""The live half of ``keywatch dev --demo``: real HTTP requests through the gateway.

The demo's sample API (``gateway.sample_api``) runs behind ``KeywatchMiddleware`` as a child of
the dev stack. Once the simulated history is processed, clients send requests with the demo
keys (``Authorization: Bearer``; ``X-Forwarded-For`` says where the simulated client is, the
demo being the trusted proxy): steady traffic for the keys that are busy at this hour, then
two attacks. The middleware answers them and publishes every decision to ``gateway.access``;
the worker detects the attacks from those events and throttles one key and revokes the other,
which the same clients see as 200s turning into 429s and 401s.

Event time: the history is shifted so that "now" falls on a weekday at 03:00 UTC of the
simulation, a night hour for the office key the compromise targets (new country at an
unusual hour: critical, revoked) and an ordinary hour for the server key whose requests jump
to another continent within seconds (impossible travel: high, throttled).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from worker.simulate import ATTACK_SITES, DAY, HOUR, Simulation, Site, rate
from worker.traffic import dist_km

LIVE_AT_H = 3  # "now" is this hour (UTC) of the day after the simulated history
BENIGN_EVERY_S, ATTACK_EVERY_S = 1.5, 0.2
# The keys' own client (the simulated history's user agent) and the attackers' tool.
OWN_AGENT, ATTACKER_AGENT = "kw-sim/1.0", "python-requests/2.32.3"
THROTTLE_AT_S, REVOKE_AT_S = 2.0, 6.0  # seconds into the live phase
LINGER_S, LIVE_MAX_S = 4.0, 60.0  # after both refusals were seen; at most this long


@dataclass
class HttpStats:
    """What the demo's HTTP clients got back, per key (the dashboard's HTTP panel)."""

    api_url: str = ""
    started: bool = False
    done: bool = True  # no live traffic pending (False while the live phase is due or runs)
    counts: dict[str, Counter[int]] = field(default_factory=dict)
    changes: list[tuple[str, int, int, str, int]] = field(default_factory=list)
    # (key id, from status, to status, error code, requests before the change)
    _last: dict[str, int] = field(default_factory=dict)

    def record(self, key_id: str, status: int, code: str) -> None:
        """Count one answer; a change of status is remembered (shown and printed)."""
        counts = self.counts.setdefault(key_id, Counter())
        before = self._last.get(key_id)
        if before is not None and before != status:
            self.changes.append((key_id, before, status, code, sum(counts.values())))
        counts[status] += 1
        self._last[key_id] = status

    def total(self) -> Counter[int]:
        """Answers by status over all keys."""
        out: Counter[int] = Counter()
        for c in self.counts.values():
            out.update(c)
        return out

    def saw(self, key_id: str, status: int) -> bool:
        """Whether ``key_id`` got ``status`` at least once."""
        return self.counts.get(key_id, Counter())[status] > 0


@dataclass(frozen=True, slots=True)
class Client:
    """One simulated caller: a key (its secret stays in memory), where it is, when it starts."""

    key_id: str
    secret: str
    ip: str
    every_s: float
    start_s: float = 0.0
    agent: str = OWN_AGENT


@dataclass
class LivePlan:
    """Who sends what during the live phase, and the shift of the simulated history."""

    offset_s: float  # added to every simulated timestamp
    clients: list[Client]
    throttle_key: str
    revoke_key: str


def plan_live(sim: Simulation, ids: dict[str, str], secrets: dict[str, str]) -> LivePlan:
    """Pick the attacked keys and the steady callers; ``ids`` maps simulated to issued ids."""
    live_t = sim.start + sim.days * DAY + LIVE_AT_H * HOUR
    busy = [p for p in sim.keys if rate(p, live_t, sim.start, sim.days) > 0]
    server = next(p for p in busy if p.kind == "server") if busy else sim.keys[0]
    quiet = [
        p
        for p in sim.keys
        if p.kind == "office"
        and p is not server
        and all(rate(p, live_t + h * HOUR, sim.start, sim.days) == 0 for h in (-2, 0, 2))
    ]
    office = max(quiet, key=lambda p: p.peak) if quiet else sim.keys[-1]  # fmt: skip
    clients = [
        Client(ids[p.key_id], secrets[ids[p.key_id]], p.sites[0].ip(0), BENIGN_EVERY_S)
        for p in busy
    ]
    # The first attacker is as slow as the key's own callers: a new place reached impossibly
    # fast by a new client is throttled; with no abuse of volume it stays a throttle.
    far = max(ATTACK_SITES, key=lambda s: dist_km(server.sites[0], s))
    clients.append(_attacker(ids[server.key_id], secrets, far, THROTTLE_AT_S, BENIGN_EVERY_S))
    # The second floods a quiet office key at night from a new country: revoked.
    foreign = next(s for s in ATTACK_SITES if s.country not in {x.country for x in office.sites})
    clients.append(_attacker(ids[office.key_id], secrets, foreign, REVOKE_AT_S, ATTACK_EVERY_S))
    return LivePlan(time.time() - live_t, clients, ids[server.key_id], ids[office.key_id])


def _attacker(
    key_id: str, secrets: dict[str, str], site: Site, start_s: float, every_s: float
) -> Client:
    return Client(key_id, secrets[key_id], site.ip(1), every_s, start_s, ATTACKER_AGENT)


async def run_live(plan: LivePlan, stats: HttpStats, ready: asyncio.Event) -> None:
    """Wait for ``ready`` (history processed), then send the live traffic until both attacks
    were refused by the gateway (or ``LIVE_MAX_S``)."""
    stats.done = False
    await ready.wait()
    stats.started = True
    started = time.monotonic()
    limits = httpx.Limits(max_connections=len(plan.clients) + 2)
    async with httpx.AsyncClient(base_url=stats.api_url, timeout=5, limits=limits) as http:
        tasks = [asyncio.create_task(_client(http, c, stats, started)) for c in plan.clients]
        try:
            seen_at = None
            while time.monotonic() - started < LIVE_MAX_S:
                both = stats.saw(plan.throttle_key, 429) and stats.saw(plan.revoke_key, 401)
                if both and seen_at is None:
                    seen_at = time.monotonic()
                if seen_at is not None and time.monotonic() - seen_at >= LINGER_S:
                    break
                await asyncio.sleep(0.2)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            stats.done = True


async def _client(http: httpx.AsyncClient, c: Client, stats: HttpStats, started: float) -> None:
    await asyncio.sleep(max(0.0, c.start_s - (time.monotonic() - started)))
    headers = {"Authorization": f"Bearer {c.secret}", "X-Forwarded-For": c.ip,
               "User-Agent": c.agent}  # fmt: skip
    n = 0
    while True:
        n += 1
        path = "/v1/users" if n % 3 else "/v1/orders"
        try:
            resp = await http.get(path, headers=headers)
        except httpx.HTTPError:
            await asyncio.sleep(c.every_s)
            continue
        stats.record(c.key_id, resp.status_code, _code(resp))
        await asyncio.sleep(c.every_s)


def _code(resp: httpx.Response) -> str:
    """The contract's error code of a refusal ("" for other answers)."""
    if resp.status_code < 400:
        return ""
    try:
        body: Any = resp.json()
    except ValueError:
        return ""
    err = body.get("error") if isinstance(body, dict) else None
    return str(err.get("code", "")) if isinstance(err, dict) else ""

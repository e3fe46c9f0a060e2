"""Sliding-window rate limits, revocation and throttle checks in one Redis round trip.

One Lua script per request: it reads the revoked set and the throttle override, then checks
every window (per key, per account, per endpoint) and counts the request in all of them only
if all allow it, so N concurrent requests against a limit L allow exactly L. The window is the
sliding-window counter (two fixed buckets, the previous one weighted by how much of it still
overlaps; ref: Cloudflare, "How we built rate limiting capable of scaling to millions of
domains", 2017): O(1) memory per key and window. The clock is Redis' own (``TIME``), so replicas
with skewed clocks share buckets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from worker.keystore.ratelimits import RateLimit

ALLOWED, REVOKED, THROTTLED, RATE_LIMITED, ALLOWED_THROTTLED = 0, 1, 2, 3, 4

# KEYS: revoked set, throttle override, throttle window base, then one base per window.
# ARGV: key hash, throttle limit, throttle window ms, then (limit, window ms) per window.
SCRIPT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {1, 0, 0, 0, 0, 0} end
local windows = {}
local throttled = false
local ttl = redis.call('PTTL', KEYS[2])
local tttl = 0
if ttl > 0 or ttl == -1 then
  throttled = true
  if ttl == -1 then ttl = 60000 end
  tttl = ttl
  local tl = tonumber(ARGV[2])
  if tl <= 0 then return {2, 0, 0, now + ttl, ttl, ttl} end
  windows[1] = {KEYS[3], tl, tonumber(ARGV[3])}
else
  for i = 4, #KEYS do
    windows[#windows + 1] = {KEYS[i], tonumber(ARGV[2 + 2 * (i - 3)]),
                             tonumber(ARGV[3 + 2 * (i - 3)])}
  end
end
local plan = {}
for i, w in ipairs(windows) do
  local base, limit, win = w[1], w[2], w[3]
  local start = now - (now % win)
  local elapsed = now - start
  local curk = base .. ':' .. start
  local cur = tonumber(redis.call('GET', curk) or '0')
  local prev = tonumber(redis.call('GET', base .. ':' .. (start - win)) or '0')
  local est = prev * (win - elapsed) / win + cur
  if est + 1 > limit then
    local retry
    if limit < 1 then
      retry = win - elapsed
    elseif cur + 1 > limit then
      retry = (win - elapsed) + math.ceil(win * (1 - (limit - 1) / cur))
    else
      retry = math.ceil((win - elapsed) - (limit - 1 - cur) * win / prev)
    end
    if retry < 1 then retry = 1 end
    local state = 3
    if throttled then state = 2 end
    return {state, limit, 0, start + win, retry, tttl}
  end
  plan[i] = {curk, win, limit, est, start}
end
local best, rem_best, reset = 0, -1, 0
for _, p in ipairs(plan) do
  redis.call('INCR', p[1])
  redis.call('PEXPIRE', p[1], p[2] * 2)
  local rem = math.floor(p[3] - p[4] - 1)
  if rem_best < 0 or rem < rem_best then best, rem_best, reset = p[3], rem, p[5] + p[2] end
end
if throttled then return {4, best, rem_best, reset, 0, tttl} end
return {0, best, rem_best, reset, 0, 0}
"""


@dataclass(frozen=True, slots=True)
class Window:
    """One limit to check: a Redis key base (per key, account or endpoint) and the limit."""

    base: str
    limit: RateLimit


@dataclass(frozen=True, slots=True)
class Verdict:
    """The script's answer: a state, and the numbers for the ``X-RateLimit-*`` headers."""

    state: int
    limit: int = 0  # 0: no window applied
    remaining: int = 0
    reset_ms: int = 0  # epoch ms when the binding window's bucket ends
    retry_ms: int = 0
    throttle_ms: int = 0  # how long the throttle override still runs (0: none)

    @classmethod
    def of(cls, raw: Sequence[int]) -> Verdict:
        """From the script's reply."""
        return cls(*(int(x) for x in raw[:6]))


def script_args(
    key_hash: str, windows: Sequence[Window], throttle: RateLimit | None
) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of ``SCRIPT`` for one request."""
    keys = ["apikey:revoked", f"apikey:throttle:{key_hash}", f"rl:throttle:{key_hash}"]
    argv: list[str | int] = [key_hash]
    argv += [throttle.limit, throttle.window_s * 1000] if throttle else [0, 60_000]
    for w in windows:
        keys.append(w.base)
        argv += [w.limit.limit, w.limit.window_s * 1000]
    return keys, argv


class LocalLimiter:
    """The same windows in process memory: what a replica enforces while Redis is down."""

    def __init__(self, max_buckets: int = 200_000) -> None:
        self._counts: dict[str, int] = {}
        self._max = max_buckets

    def hit(self, windows: Sequence[Window], now_ms: int, throttled: bool = False) -> Verdict:
        """Check and count one request against ``windows`` (all or nothing)."""
        plan = []
        for w in windows:
            win, limit = w.limit.window_s * 1000, w.limit.limit
            start = now_ms - now_ms % win
            elapsed = now_ms - start
            cur = self._counts.get(f"{w.base}:{start}", 0)
            prev = self._counts.get(f"{w.base}:{start - win}", 0)
            est = prev * (win - elapsed) / win + cur
            if est + 1 > limit:
                retry = (
                    win - elapsed
                    if cur + 1 > limit or not prev
                    else max(1, math.ceil((win - elapsed) - (limit - 1 - cur) * win / prev))
                )
                state = THROTTLED if throttled else RATE_LIMITED
                return Verdict(state, limit, 0, start + win, max(1, retry))
            plan.append((f"{w.base}:{start}", limit, est, start + win))
        if len(self._counts) > self._max:
            self._counts.clear()  # crude, but bounded; this path only runs during an outage
        best = Verdict(ALLOWED_THROTTLED if throttled else ALLOWED, 0, -1)
        for bucket, limit, est, reset in plan:
            self._counts[bucket] = self._counts.get(bucket, 0) + 1
            rem = math.floor(limit - est - 1)
            if best.remaining < 0 or rem < best.remaining:
                best = Verdict(best.state, limit, rem, reset)
        return best

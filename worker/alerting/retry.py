"""Retries with exponential backoff and jitter, capped in attempts and in total time.

ref: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015): jitter spreads the retries
of many clients; "equal jitter" keeps at least half the backoff so a retry is never immediate.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from detectors.policy import DeliveryConfig
from worker.errors import DeliveryError, DeliveryGaveUp

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry ``attempt`` (0-based): base * 2^attempt, capped, with equal jitter."""

    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before the next try."""
        ceiling = min(self.max_s, self.base_s * (2 ** min(attempt, 30)))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


async def with_retries(
    send: Callable[[], Awaitable[None]],
    config: DeliveryConfig,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Call ``send`` until it succeeds; returns the attempts used, or raises ``DeliveryGaveUp``.

    A ``DeliveryError.retry_after`` (HTTP ``Retry-After``) replaces the backoff for that wait.
    """
    backoff = Backoff(config.base_delay_s, config.max_delay_s)
    start = clock()
    for attempt in range(1, config.max_attempts + 1):
        try:
            await send()
            return attempt
        except DeliveryGaveUp:
            raise  # permanent (e.g. HTTP 400): another try cannot help
        except DeliveryError as exc:
            last = exc
        wait = last.retry_after if last.retry_after is not None else backoff.delay(attempt - 1)
        if attempt == config.max_attempts or clock() - start + wait > config.max_total_s:
            break
        await sleep(wait)
    raise DeliveryGaveUp(f"gave up after {attempt} attempt(s): {last}") from last

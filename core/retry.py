"""One retry policy for keywatch: exponential backoff with jitter, bounded in attempts and time.

Every retry loop (alert delivery, key actions while the database is down, code-host fetches,
the gateway's broker and Redis feeds) is a ``RetryPolicy`` run by stamina, which logs each
retry (``stamina.retry_scheduled``) and counts it (``stamina_retries_total``). A wait the
failure asks for itself (HTTP ``Retry-After``, a rate-limit reset) replaces the backoff, and a
wait that would end past the policy's deadline gives up at once instead of sleeping.
ref: AWS Architecture Blog, "Exponential Backoff And Jitter" (2015): jitter spreads the
retries of many clients.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import msgspec
import stamina

T = TypeVar("T")
# the errors to retry: exception types, or a predicate (e.g. "a DeliveryError but not GaveUp")
Retryable = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
WaitOf = Callable[[BaseException], float | None]
OnRetry = Callable[[int, BaseException], Awaitable[None]]
Attempts = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]


def _no_wait(_exc: BaseException) -> float | None:
    return None


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How often and how long one operation is retried (tests use tiny delays).

    ``attempts`` None retries until it succeeds; ``timeout_s`` None has no deadline.
    The wait before retry n (1-based) is min(max_delay_s, base_delay_s * 2^(n-1) + jitter),
    jitter uniform in [0, base_delay_s]. It is also the schema of a retry table in a config
    file (``core.schema.convert``), where ``attempts`` is written ``max_attempts`` and
    ``timeout_s`` ``max_total_s`` (the policy file's ``[delivery]``).
    """

    attempts: Attempts | None = msgspec.field(default=None, name="max_attempts")
    base_delay_s: Seconds = 0.5
    max_delay_s: Seconds = 30.0
    timeout_s: Seconds | None = msgspec.field(default=None, name="max_total_s")

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        on: Retryable,
        *,
        wait_of: WaitOf = _no_wait,
        on_retry: OnRetry | None = None,
    ) -> tuple[T, int]:
        """``fn()`` retried on ``on``; returns its result and the attempts used, or raises the
        last error. ``wait_of(exc)``: a wait the error asks for (None: the backoff);
        ``on_retry(attempt, exc)`` is awaited after each failure of a retryable kind."""
        start = time.monotonic()
        retryable = _predicate(on)

        def hook(exc: Exception) -> bool | float:
            if not retryable(exc):
                return False
            wait = wait_of(exc)
            if wait is None:
                return True
            if self.timeout_s is not None and time.monotonic() - start + wait > self.timeout_s:
                return False  # sleeping would end past the deadline: give up now
            return max(0.0, wait)

        async for attempt in stamina.retry_context(
            on=hook, attempts=self.attempts, timeout=self.timeout_s,
            wait_initial=self.base_delay_s, wait_max=self.max_delay_s,
            wait_jitter=self.base_delay_s, wait_exp_base=2,
        ):  # fmt: skip
            with attempt:
                try:
                    return await fn(), attempt.num
                except Exception as exc:
                    if on_retry is not None and retryable(exc):
                        await on_retry(attempt.num, exc)
                    raise
        raise AssertionError("unreachable: stamina re-raises the last error")


def _predicate(on: Retryable) -> Callable[[BaseException], bool]:
    if isinstance(on, type | tuple):
        types = on
        return lambda exc: isinstance(exc, types)
    return on

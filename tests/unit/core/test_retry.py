"""The one retry policy and the one Retry-After parser."""

from __future__ import annotations

import asyncio
import time

import pytest

from core.httpdate import retry_after
from core.retry import RetryPolicy

TINY = RetryPolicy(attempts=4, base_delay_s=0.001, max_delay_s=0.005)


class Flaky(Exception):
    """A failure another try may cure."""


async def test_retries_until_success_and_reports_attempts() -> None:
    calls: list[int] = []
    seen: list[int] = []

    async def fn() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Flaky
        return "ok"

    async def on_retry(attempt: int, _exc: BaseException) -> None:
        seen.append(attempt)

    assert await TINY.call(fn, Flaky, on_retry=on_retry) == ("ok", 3)
    assert seen == [1, 2]


async def test_gives_up_after_the_attempts_with_the_last_error() -> None:
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)
        raise Flaky(len(calls))

    with pytest.raises(Flaky) as err:
        await TINY.call(fn, Flaky)
    assert len(calls) == 4 and err.value.args == (4,)


async def test_other_errors_and_a_false_predicate_are_not_retried() -> None:
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)
        raise KeyError("no")

    with pytest.raises(KeyError):
        await TINY.call(fn, Flaky)
    with pytest.raises(KeyError):
        await TINY.call(fn, lambda exc: isinstance(exc, KeyError) and len(calls) < 3)
    assert len(calls) == 3  # once, then twice: the predicate said no on the third failure


async def test_an_asked_wait_replaces_the_backoff_unless_past_the_deadline() -> None:
    calls: list[float] = []

    async def fn() -> None:
        calls.append(time.monotonic())
        raise Flaky(0.15 if len(calls) == 1 else 60.0)

    policy = RetryPolicy(attempts=10, base_delay_s=0.001, max_delay_s=0.001, timeout_s=5.0)
    with pytest.raises(Flaky):
        await policy.call(fn, Flaky, wait_of=lambda e: float(e.args[0]))
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.14


async def test_unlimited_attempts_retry_until_cancelled() -> None:
    calls: list[int] = []

    async def fn() -> None:
        calls.append(1)
        raise Flaky

    task = asyncio.ensure_future(RetryPolicy(base_delay_s=0.001, max_delay_s=0.002).call(fn, Flaky))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) > 10


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 1.5 ", 1.5), ("-3", 0.0), ("nan", None), ("inf", None), ("", None),
     (None, None), ("later", None), ("Thu, 01 Jan 1970 00:02:00 GMT", 60.0),
     ("Thu, 01 Jan 1970 00:00:30 GMT", 0.0)],
)  # fmt: skip
def test_retry_after_reads_seconds_and_http_dates(value: str | None, seconds: float | None) -> None:
    assert retry_after(value, now=60.0) == seconds

"""Alert delivery's retries: the policy's ``[delivery]`` table is a ``RetryPolicy``
(``detectors.routing.Delivery``); this decides which errors it retries and which wait they ask."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from core.errors import DeliveryError, DeliveryGaveUp
from core.retry import RetryPolicy


def transient(exc: BaseException) -> bool:
    """A delivery error another try may cure (``DeliveryGaveUp``, e.g. HTTP 400, cannot)."""
    return isinstance(exc, DeliveryError) and not isinstance(exc, DeliveryGaveUp)


def asked_wait(exc: BaseException) -> float | None:
    """The wait a sink asked for (HTTP ``Retry-After``), which replaces the backoff."""
    return exc.retry_after if isinstance(exc, DeliveryError) else None


async def with_retries(send: Callable[[], Awaitable[None]], policy: RetryPolicy) -> int:
    """Call ``send`` until it succeeds; returns the attempts used, or raises ``DeliveryGaveUp``."""
    attempts = 0

    async def once() -> None:
        nonlocal attempts
        attempts += 1
        await send()

    try:
        await policy.call(once, transient, wait_of=asked_wait)
    except DeliveryGaveUp:
        raise
    except DeliveryError as exc:
        raise DeliveryGaveUp(f"gave up after {attempts} attempt(s): {exc}") from exc
    return attempts

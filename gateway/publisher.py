"""Publishing every decision to ``gateway.access`` without ever blocking a request.

``emit`` appends to a bounded in-memory buffer (a full buffer drops and counts); a background
task sends JSON-array batches with aiokafka. A broker outage therefore costs events, counted in
``keywatch_gateway_events_dropped_total``, never request latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from core.retry import RetryPolicy
from gateway.metrics import GatewayMetrics

log = structlog.get_logger("keywatch.gateway")
BROKER_ERRORS = (KafkaError, TimeoutError, OSError)
# Each try sends the next batch (a failed one is dropped and counted): the backoff only paces
# the tries while the broker is away.
PUBLISH_RETRY = RetryPolicy(base_delay_s=0.5, max_delay_s=5.0)


class Publisher:
    """A bounded buffer drained to Kafka in batches by one background task."""

    def __init__(
        self,
        bootstrap: list[str] | None,
        topic: str,
        metrics: GatewayMetrics,
        *,
        buffer: int = 10_000,
        batch: int = 500,
        interval_s: float = 0.2,
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._metrics = metrics
        self._buf: deque[dict[str, Any]] = deque()
        self._max = buffer
        self._batch = batch
        self._interval = interval_s
        self._producer: AIOKafkaProducer | None = None
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event; O(1), never waits."""
        if len(self._buf) >= self._max:
            self.dropped += 1
            self._metrics.dropped.labels("buffer_full").inc()
            return
        self._buf.append(event)

    def start(self) -> None:
        """Start the sending task (no-op without a broker)."""
        if self._bootstrap and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self, flush_timeout_s: float = 5.0) -> None:
        """Send what is buffered (within the timeout), then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(self._flush_all(), flush_timeout_s)
        if self._producer is not None:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(self._producer.stop(), flush_timeout_s)
            self._producer = None

    async def _run(self) -> None:
        while True:
            self._metrics.buffered.set(len(self._buf))
            if self._buf:
                await PUBLISH_RETRY.call(self._send_batch, BROKER_ERRORS,
                                         on_retry=self._send_failed)  # fmt: skip
            if len(self._buf) < self._batch:
                await asyncio.sleep(self._interval)

    async def _send_failed(self, _attempt: int, exc: BaseException) -> None:
        """A batch the broker did not take: count it, start a new producer, back off."""
        self._metrics.backend_errors.labels("broker").inc()
        log.warning("gateway_publish_failed", error=repr(exc))
        await self._reset_producer()

    async def _flush_all(self) -> None:
        while self._buf:
            await self._send_batch()

    async def _send_batch(self) -> None:
        if not self._buf:
            return
        producer = await self._started()
        n = min(len(self._buf), self._batch)
        batch = [self._buf.popleft() for _ in range(n)]
        try:
            await asyncio.wait_for(
                producer.send_and_wait(self.topic, orjson.dumps(batch)), timeout=10
            )
        except BaseException:
            self.dropped += n  # a batch the broker did not take is counted, not retried
            self._metrics.dropped.labels("send_failed").inc(n)
            raise
        self._metrics.published.inc(n)

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap, linger_ms=20, acks=1,
                request_timeout_ms=5000, max_request_size=4 * 1024 * 1024,
            )  # fmt: skip
            try:
                await asyncio.wait_for(producer.start(), timeout=5)
            except BaseException:
                with contextlib.suppress(KafkaError, TimeoutError, OSError):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _reset_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(KafkaError, TimeoutError, OSError):
                await asyncio.wait_for(self._producer.stop(), 2)
            self._producer = None

"""aiokafka's connection errors as state changes, not a line per retry.

With the broker gone, every aiokafka client of a worker (Faust's consumer and producer, the
ingest consumer, the changelog reader) retries about ten times a second and logs each failure
at ERROR: ~150 lines a second. This filter lets the first failure of an outage through as one
``broker unreachable`` line, then a reminder a minute with the number of lines it held back. A
failure after ``QUIET_S`` seconds without any starts a new outage (the broker was back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

# aiokafka's messages for an unreachable broker (aiokafka 0.14: client, fetcher, coordinator).
PATTERNS: Final = (
    "Unable connect to node",
    "Unable to update metadata",
    "Group Coordinator Request failed",
    "Failed fetch messages",
    "Unable to request metadata",
    "Connect call failed",
)
LOGGERS: Final = (
    "aiokafka",
    "aiokafka.client",
    "aiokafka.conn",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
    "aiokafka.producer.producer",
)
QUIET_S: Final = 10.0
REMIND_S: Final = 60.0


class BrokerOutageFilter(logging.Filter):
    """Collapses repeated broker-connection errors into state changes and reminders."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.since: float | None = None
        self.last = self.reminded = 0.0
        self.held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """True for records to print (rewritten when they open or remind of an outage)."""
        message = record.getMessage()
        if not any(p in message for p in PATTERNS):
            return True
        now = self.clock()
        if self.since is None or now - self.last > QUIET_S:
            self.since, self.reminded, self.held = now, now, 0
            self.last = now
            record.msg, record.args = f"broker unreachable: {message} (retrying quietly)", ()
            return True
        self.last = now
        if now - self.reminded < REMIND_S:
            self.held += 1
            return False
        held, self.held, self.reminded = self.held, 0, now
        record.msg = (
            f"broker still unreachable after {now - self.since:.0f}s ({held} retries): {message}"
        )
        record.args = ()
        return True


_installed: BrokerOutageFilter | None = None


def install() -> BrokerOutageFilter:
    """Attach one shared filter to aiokafka's loggers (idempotent)."""
    global _installed
    if _installed is None:
        _installed = BrokerOutageFilter()
        for name in LOGGERS:
            logging.getLogger(name).addFilter(_installed)
    return _installed

"""Wait for the Kafka broker before a long-running process starts (one line, no traceback).

``keywatch worker`` and ``keywatch scanner`` call this first: with no broker, Faust would fail
with a long traceback. Instead they say once that they are waiting, retry, and give up after
``KEYWATCH_BROKER_WAIT_S`` seconds (0: wait forever, as containers want) with one error line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from core.errors import ConfigError

RETRY_S = 1.0


async def reachable(bootstrap: list[str], timeout_s: float) -> bool:
    """Whether the cluster answers a metadata request (TCP alone is not enough for Kafka)."""
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # a refused connection is the answer, not an error
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s)
        return True
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await client.close()
        quiet.setLevel(level)


def wait_for_broker(bootstrap: list[str], wait_s: float, shown: str) -> None:
    """Return once the broker answers; raise ConfigError after ``wait_s`` (0: never)."""
    deadline = time.monotonic() + wait_s if wait_s > 0 else None
    told = False
    while not asyncio.run(reachable(bootstrap, 5.0)):
        if deadline is not None and time.monotonic() >= deadline:
            raise ConfigError(f"no Kafka broker answered at {shown} (KEYWATCH_BROKER) "
                              f"within {wait_s:g} s")  # fmt: skip
        if not told:
            limit = f"up to {wait_s:g} s" if deadline else "until it answers"
            print(f"keywatch: waiting for the Kafka broker at {shown} ({limit}; "
                  "KEYWATCH_BROKER_WAIT_S)…", file=sys.stderr, flush=True)  # fmt: skip
            told = True
        time.sleep(RETRY_S)

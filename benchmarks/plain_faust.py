"""A plain Faust agent (one ``async for`` over the stream, JSON-decoding each message): the
baseline keywatch's one-event-per-message ingest is compared with.

    python benchmarks/plain_faust.py BROKER_URL TOPIC MESSAGES DATADIR

Reads ``TOPIC`` from the beginning and prints ``PLAIN_SECONDS=<s>`` from the first message to the
``MESSAGES``-th, then exits. Run by worker_bench.py.
"""

from __future__ import annotations

import os
import secrets
import sys
import time

import faust
import orjson


def main() -> None:
    """Consume, time, print, exit."""
    broker, topic_name, want, datadir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = faust.App(
        f"plain-{secrets.token_hex(3)}", broker=broker, value_serializer="raw",
        key_serializer="raw", store="memory://", web_enabled=False, datadir=datadir,
        consumer_auto_offset_reset="earliest", autodiscover=False,
    )  # fmt: skip
    topic = app.topic(topic_name)
    state = {"seen": 0, "t0": 0.0}

    @app.agent(topic)
    async def count(stream: faust.StreamT[bytes]) -> None:
        async for value in stream:
            orjson.loads(value)
            if not state["seen"]:
                state["t0"] = time.perf_counter()
            state["seen"] += 1
            if state["seen"] >= want:
                print(f"\nPLAIN_SECONDS={time.perf_counter() - state['t0']:.3f}", flush=True)
                os._exit(0)

    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()


if __name__ == "__main__":
    main()

"""Ingest cost of rejected array elements: a Kong batch without credentials and an array of ints.

Run: ``python benchmarks/ingest_rejects.py``. Prints seconds per message for each size; with
parse-once the time grows linearly with the number of rejected elements (it grew quadratically
when each reject re-parsed the message to dead-letter its element).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from worker.agents.ingest import IngestStage
from worker.keycache import KeyCache
from worker.keystore.store import KeyStore
from worker.metrics import Metrics
from worker.settings import Settings


async def _none(*args: Any) -> None:
    return None


def _kong_unauthenticated() -> dict[str, Any]:
    return {"started_at": 1795000000000, "client_ip": "8.8.8.8",
            "request": {"method": "GET", "uri": "/v1/x", "headers": {"user-agent": "x"}},
            "response": {"status": 401}}  # fmt: skip


async def _time(stage: IngestStage, message: bytes) -> float:
    start = time.perf_counter()
    await stage.handle([message])
    return time.perf_counter() - start


async def main() -> None:
    """Time one message of each size."""
    with tempfile.TemporaryDirectory() as tmp:
        store = KeyStore(f"sqlite:///{Path(tmp) / 'k.db'}")
        cache = KeyCache(store.find_many_by_hash, store.find_many)
        stage = IngestStage(Settings(), Metrics(), cache, _none, _none)
        for n in (800, 1600, 3200):
            kong = orjson.dumps([_kong_unauthenticated()] * n)
            print(f"kong unauthenticated x{n}: {await _time(stage, kong):.3f} s")
        for n in (2500, 5000, 10000):
            ints = orjson.dumps(list(range(n)))
            print(f"int array x{n}: {await _time(stage, ints):.3f} s")


if __name__ == "__main__":
    asyncio.run(main())

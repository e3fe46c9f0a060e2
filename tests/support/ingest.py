"""The ingest stage without a broker: its sends captured, minimal Kong entries to feed it."""

from __future__ import annotations

from typing import Any

from worker.agents.ingest import IngestStage
from worker.eventcodec import decode_batch
from worker.keycache import KeyCache
from worker.keystore.store import KeyStore
from worker.metrics import Metrics
from worker.settings import Settings

TS = 1795000000000


class Capture:
    """Stands in for the events topic and the dead-letter topic."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, bytes]] = []
        self.letters: list[dict[str, Any]] = []

    async def send(self, partition: int, value: bytes) -> None:
        self.batches.append((partition, value))

    async def dead_letter(self, reason: str, source: str, payload: Any, detail: str = "") -> None:
        self.letters.append({"reason": reason, "source": source, "payload": payload,
                             "detail": detail})  # fmt: skip

    def events(self) -> list[Any]:
        return [e for _, v in self.batches for e in decode_batch(v)]


def kong(key_id: str, ip: str = "8.8.8.8", **extra: Any) -> dict[str, Any]:
    """A minimal Kong entry at ``TS`` (what the stage reads), plus ``extra`` fields."""
    return {
        "started_at": TS, "client_ip": ip, "request": {"method": "GET", "uri": "/v1/x"},
        "response": {"status": 200}, "authenticated_entity": {"id": key_id}, **extra,
    }  # fmt: skip


def stage_for(store: KeyStore, cap: Capture, metrics: Metrics, **settings: Any) -> IngestStage:
    """An ingest stage on ``store`` (4 partitions unless ``settings`` say) sending into ``cap``."""
    s = Settings(partitions=4, **settings)
    cache = KeyCache(store.find_many_by_hash, store.find_many)
    return IngestStage(s, metrics, cache, cap.send, cap.dead_letter)

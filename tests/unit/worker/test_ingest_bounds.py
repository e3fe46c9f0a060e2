"""Ingest work per message is linear and bounded: counted in parses, not timed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.ingest import Capture, kong, stage_for
from worker.keystore.store import KeyStore
from worker.metrics import Metrics


@pytest.fixture
def store(sqlite_url: str) -> KeyStore:
    return KeyStore(sqlite_url)


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes handed to ``orjson.loads``, one entry per call."""
    calls: list[int] = []
    real = orjson.loads

    def counting(value: Any) -> Any:
        calls.append(len(value))
        return real(value)

    monkeypatch.setattr(orjson, "loads", counting)
    return calls


@pytest.mark.parametrize("n", [1000, 2000, 4000])
async def test_rejected_elements_are_parsed_once(
    store: KeyStore, decoded: list[int], n: int
) -> None:
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    message = orjson.dumps(list(range(n)))
    await stage.handle([message])
    assert len(cap.letters) == n
    assert sum(decoded) == len(message)  # one parse, whatever the number of rejects
    assert [letter["payload"] for letter in cap.letters] == list(range(n))


async def test_unauthenticated_kong_batch_is_parsed_once(
    store: KeyStore, decoded: list[int]
) -> None:
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    entries = [kong("k") for _ in range(1600)]
    for entry in entries:
        del entry["authenticated_entity"]
    await stage.handle([orjson.dumps(entries)])
    assert {letter["reason"] for letter in cap.letters} == {"missing_key"}
    assert len(cap.letters) == 1600 and len(decoded) == 1


async def test_an_array_over_the_event_bound_is_one_dead_letter(store: KeyStore) -> None:
    cap = Capture()
    stage = stage_for(store, cap, Metrics(), max_message_events=1000)
    await stage.handle([orjson.dumps(list(range(100_000))), orjson.dumps([kong("k1")] * 1000)])
    (letter,) = cap.letters
    assert letter["reason"] == "too_many_events"
    assert [e.key_id for e in cap.events()] == ["k1"] * 1000


async def test_a_message_over_the_byte_bound_is_one_dead_letter(
    store: KeyStore, decoded: list[int]
) -> None:
    cap = Capture()
    stage = stage_for(store, cap, Metrics(), max_message_bytes=10_000)
    await stage.handle([orjson.dumps([kong("k1")] * 100)])
    (letter,) = cap.letters
    assert letter["reason"] == "too_large" and decoded == []

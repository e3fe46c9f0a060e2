"""``keywatch worker`` end to end: a Kong credential linked with ``keys link`` is resolved to its
key; an unlinked one is dead-lettered; a thief's second key does not move the identity."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support.events import kong
from tests.support.kafka import consume, consume_records, publish
from tests.support.procs import Proc
from worker.devstack import EmbeddedBroker
from worker.eventcodec import decode_batch
from worker.keystore.links import link
from worker.keystore.store import KeyStore

pytestmark = pytest.mark.services

LINKED = "4d9c2a7e-3b1f-4e6a-9c8d-2f5b7a1e0c93"
UNLINKED = "0f0e0d0c-0b0a-4908-8706-050403020100"


@pytest.fixture
def store(sqlite_url: str) -> Iterator[KeyStore]:
    """The key store, created before the worker starts (requested first)."""
    store = KeyStore(sqlite_url)
    yield store
    store.close()


def test_links_and_precedence_in_the_worker(
    store: KeyStore,
    worker: Proc,
    broker: EmbeddedBroker,
) -> None:
    topics = worker.env
    _, victim = store.create("victim")
    thief_key, _ = store.create("thief")
    link(store, victim.key_id, LINKED, "kong_credential")
    now = time.time()
    stolen: dict[str, Any] = kong(now, LINKED, "8.8.8.8")
    stolen["request"]["headers"]["x-api-key"] = thief_key.secret
    ghost = kong(now, UNLINKED, "8.8.8.8")
    values = [orjson.dumps(stolen), orjson.dumps(ghost)]
    asyncio.run(publish(broker.bootstrap, topics["KEYWATCH_TOPIC_ACCESS"], values))
    worker.wait_metric("keywatch_events_analyzed_total", 1)
    (letter,) = asyncio.run(consume(broker.bootstrap, topics["KEYWATCH_TOPIC_DEAD_LETTER"], 1))
    assert letter["reason"] == "unknown_key" and "keys link" in letter["detail"]
    by_key = topics["KEYWATCH_TOPIC_EVENTS_BY_KEY"]
    (record,) = asyncio.run(consume_records(broker.bootstrap, by_key, 1))
    (event,) = decode_batch(record.value)
    assert (event.key_id, event.account_id) == (victim.key_id, "victim")
    assert event.extra_key_hash == thief_key.key_hash

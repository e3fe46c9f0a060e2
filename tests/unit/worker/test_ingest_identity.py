"""Identity precedence: the key the gateway authenticated is the identity, any other key is
evidence; gateway credential ids resolve through links or are dead-lettered."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.keyformat import hash_key
from tests.support.ingest import TS, Capture, kong, stage_for
from worker.ingest import KeyInfo, KeyResolver, parse_message
from worker.keycache import KeyCache
from worker.keystore.links import find_many_identities, link
from worker.keystore.store import KeyStore
from worker.metrics import Metrics

KONG_CREDENTIAL = "4d9c2a7e-3b1f-4e6a-9c8d-2f5b7a1e0c93"
KONG_CONSUMER = "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


@pytest.fixture
def store(sqlite_url: str) -> KeyStore:
    return KeyStore(sqlite_url)


def linked_stage(store: KeyStore, cap: Capture, metrics: Metrics) -> Any:
    stage = stage_for(store, cap, metrics)
    stage.keys = KeyCache(store.find_many_by_hash, store.find_many,
                          by_identity=lambda ids: find_many_identities(store, ids))  # fmt: skip
    return stage


async def test_a_second_key_in_a_header_does_not_steal_the_identity(store: KeyStore) -> None:
    """The review's reproduction: Kong authenticated A, the thief adds their own key B."""
    _, victim = store.create("victim")
    thief_key, _ = store.create("thief")
    cap, metrics = Capture(), Metrics()
    stage = stage_for(store, cap, metrics)
    entry = kong(victim.key_id)
    entry["request"]["headers"] = {"x-api-key": thief_key.secret}
    await stage.handle([orjson.dumps(entry)])
    (event,) = cap.events()
    assert (event.key_id, event.account_id) == (victim.key_id, "victim")
    assert event.extra_key_hash == thief_key.key_hash
    assert metrics.registry.get_sample_value("keywatch_extra_keys_total") == 1


async def test_a_second_key_in_the_query_is_evidence_too(store: KeyStore) -> None:
    _, victim = store.create("victim")
    thief_key, _ = store.create("thief")
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    aws = {"requestId": "r1", "requestTimeEpoch": TS, "httpMethod": "GET",
           "identity": {"sourceIp": "8.8.8.8", "apiKeyId": victim.key_id},
           "path": f"/v1/x?api_key={thief_key.secret}", "status": "200"}  # fmt: skip
    await stage.handle([orjson.dumps(aws)])
    (event,) = cap.events()
    assert event.key_id == victim.key_id and event.key_in_query
    assert event.extra_key_hash == thief_key.key_hash


async def test_the_authenticated_key_logged_in_its_header_is_no_finding(store: KeyStore) -> None:
    own, rec = store.create("acme")
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    entry = kong(rec.key_id)
    entry["request"]["headers"] = {"apikey": own.secret}
    await stage.handle([orjson.dumps(entry)])
    (event,) = cap.events()
    assert (event.key_id, event.extra_key_hash) == (rec.key_id, None)


def test_two_different_raw_keys_keep_the_header_one_and_flag_the_query_one() -> None:
    header, query = "sk_live_" + "a" * 43, "sk_live_" + "b" * 43
    entry = kong("")
    del entry["authenticated_entity"]
    entry["request"]["headers"] = {"x-api-key": header}
    entry["request"]["uri"] = f"/v1/x?apikey={query}"
    (raw,) = parse_message(orjson.dumps(entry)).events
    assert (raw.key_hash, raw.extra_key_hash) == (hash_key(header), hash_key(query))


async def test_an_unlinked_kong_credential_is_dead_lettered_not_profiled(store: KeyStore) -> None:
    cap = Capture()
    stage = linked_stage(store, cap, Metrics())
    await stage.handle([orjson.dumps(kong(KONG_CREDENTIAL))])
    assert cap.events() == []
    (letter,) = cap.letters
    assert letter["reason"] == "unknown_key" and "keys link" in letter["detail"]


async def test_a_linked_kong_credential_resolves_to_its_key(store: KeyStore) -> None:
    _, rec = store.create("acme")
    assert link(store, rec.key_id, KONG_CREDENTIAL.upper(), "kong_credential")
    assert not link(store, rec.key_id, KONG_CREDENTIAL, "kong_credential")  # idempotent
    cap = Capture()
    stage = linked_stage(store, cap, Metrics())
    await stage.handle([orjson.dumps(kong(KONG_CREDENTIAL))])
    (event,) = cap.events()
    assert (event.key_id, event.account_id) == (rec.key_id, "acme")


async def test_a_linked_kong_consumer_resolves_an_unlinked_credential(store: KeyStore) -> None:
    _, rec = store.create("acme")
    link(store, rec.key_id, KONG_CONSUMER, "kong_consumer")
    cap = Capture()
    stage = linked_stage(store, cap, Metrics())
    await stage.handle([orjson.dumps(kong(KONG_CREDENTIAL, consumer={"id": KONG_CONSUMER}))])
    assert [e.key_id for e in cap.events()] == [rec.key_id]


def test_replay_applies_the_same_precedence() -> None:
    victim, thief = KeyInfo("victim-id", "v"), KeyInfo("thief-id", "t")
    thief_secret = "sk_live_" + "c" * 43
    resolver = KeyResolver(
        lambda h: thief if h == hash_key(thief_secret) else None,
        lambda i: victim if i == "victim-id" else None,
    )
    entry = kong("victim-id")
    entry["request"]["headers"] = {"x-api-key": thief_secret}
    (raw,) = parse_message(orjson.dumps(entry)).events
    event = resolver.resolve(raw)
    assert (event.key_id, event.extra_key_hash) == ("victim-id", hash_key(thief_secret))


def test_replay_raises_the_second_key_finding() -> None:
    from detectors.analyzer import Analyzer
    from detectors.policy_file import load_policy
    from geoip.resolver import GeoResolver
    from worker.replay import Replay

    thief_secret = "sk_live_" + "d" * 43
    entry = kong("victim-id")
    entry["request"]["headers"] = {"x-api-key": thief_secret}
    with GeoResolver() as geo:
        victim = KeyInfo("victim-id", "v")
        replay = Replay(Analyzer(geo, load_policy(None)), "auto", lambda _h: None,
                        lambda i: victim if i == "victim-id" else None)  # fmt: skip
        replay.read_line(orjson.dumps(entry))
        alerts = replay.run()
    types = {s.type for a in alerts for s in a.signals}
    assert "transport.second_key" in types
    assert all(a.key_id == "victim-id" for a in alerts)


async def test_kongs_documented_shape_with_hide_credentials(store: KeyStore) -> None:
    """Kong's log.serialize() shape (tests/unit/ingest/samples.py): no key in the request, only
    the credential UUID and the consumer."""
    from tests.unit.ingest.samples import KONG

    _, rec = store.create("acme")
    cap = Capture()
    stage = linked_stage(store, cap, Metrics())
    await stage.handle([orjson.dumps(KONG)])
    assert cap.events() == [] and [x["reason"] for x in cap.letters] == ["unknown_key"]
    link(store, rec.key_id, KONG["authenticated_entity"]["id"], "kong_credential")
    stage.keys.identity_cache.data.clear()  # a link made now is seen within the negative TTL
    await stage.handle([orjson.dumps(KONG)])
    assert [e.key_id for e in cap.events()] == [rec.key_id]

"""The ingest stage: parse, dead-letter, resolve and re-key (no broker: sends are captured)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.errors import KeyStoreUnavailable
from core.retry import RetryPolicy
from tests.support.ingest import TS, Capture, kong, stage_for
from worker.agents.ingest import IngestStage
from worker.eventcodec import decode_batch, decode_sourced
from worker.keycache import KeyCache
from worker.keystore.store import KeyStore
from worker.metrics import Metrics
from worker.partitioning import partition_for
from worker.settings import Settings


@pytest.fixture
def store(sqlite_url: str) -> KeyStore:
    return KeyStore(sqlite_url)


def count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_kong_array_is_rekeyed_by_partition(store: KeyStore) -> None:
    cap, metrics = Capture(), Metrics()
    stage = stage_for(store, cap, metrics)
    batch = orjson.dumps([kong(f"k{i % 7}") for i in range(60)])
    assert await stage.handle([batch, orjson.dumps(kong("solo"))]) == 61
    assert count(metrics, "keywatch_events_total", format="kong") == 61
    assert len({p for p, _ in cap.batches}) == len(cap.batches)  # one message per partition
    for partition, value in cap.batches:
        assert {partition_for(e.key_id, 4) for e in decode_batch(value)} == {partition}
    assert sorted(e.key_id for e in cap.events()) == sorted(
        [f"k{i % 7}" for i in range(60)] + ["solo"]
    )
    assert cap.letters == []


async def test_full_buffers_leave_as_several_messages(store: KeyStore) -> None:
    cap = Capture()
    stage = stage_for(store, cap, Metrics(), batch_max_events=10)
    await stage.handle([orjson.dumps([kong("same") for _ in range(25)])])
    assert [len(decode_batch(v)) for _, v in cap.batches] == [10, 10, 5]


async def test_key_hash_resolves_through_the_store(store: KeyStore) -> None:
    new, rec = store.create("acme-corp")
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    native = {"ts": TS, "ip": "8.8.8.8", "key_hash": new.key_hash}
    await stage.handle([orjson.dumps(native)])
    (event,) = cap.events()
    assert (event.key_id, event.account_id) == (rec.key_id, "acme-corp")


async def test_raw_key_in_a_kong_header_is_hashed_and_resolved(store: KeyStore) -> None:
    new, rec = store.create("acme")
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    entry = kong("")
    del entry["authenticated_entity"]
    entry["request"]["headers"] = {"apikey": new.secret}
    await stage.handle([orjson.dumps(entry)])
    assert [e.key_id for e in cap.events()] == [rec.key_id]
    assert new.secret.encode() not in b"".join(v for _, v in cap.batches)


async def test_unknown_hash_is_dead_lettered_but_unknown_id_is_analyzed(store: KeyStore) -> None:
    cap, metrics = Capture(), Metrics()
    stage = stage_for(store, cap, metrics)
    msgs = [{"ts": TS, "ip": "8.8.8.8", "key_hash": "ab" * 32},
            {"ts": TS, "ip": "8.8.8.8", "key_id": "gateway-own-id"}]  # fmt: skip
    await stage.handle([orjson.dumps(m) for m in msgs])
    assert [e.key_id for e in cap.events()] == ["gateway-own-id"]
    (letter,) = cap.letters
    assert letter["reason"] == "unknown_key"
    assert letter["payload"]["key_hash"] == "ab" * 32


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_utf8"),
        (b'{"hello": "world"}', "unknown_format"),
        (b"[1, 2]", "not_an_object"),
    ],
)
async def test_bad_messages_become_dead_letters(store: KeyStore, value: bytes, reason: str) -> None:
    cap, metrics = Capture(), Metrics()
    stage = stage_for(store, cap, metrics)
    good = orjson.dumps(kong("k1"))
    assert await stage.handle([value, good]) == 1
    assert {letter["reason"] for letter in cap.letters} == {reason}
    assert all(letter["source"] == "gateway.access" for letter in cap.letters)


async def test_one_bad_element_rejects_only_itself(store: KeyStore) -> None:
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    bad = kong("k2", ip="not-an-ip")
    await stage.handle([orjson.dumps([kong("k1"), bad, kong("k3")])])
    assert sorted(e.key_id for e in cap.events()) == ["k1", "k3"]
    (letter,) = cap.letters
    assert letter["payload"] == bad  # the element, not the whole array
    assert orjson.loads(letter["detail"])["index"] == 1


async def test_a_parser_crash_keeps_the_input(store: KeyStore) -> None:
    cap = Capture()
    s = Settings(partitions=2)

    def explode(raw: bytes) -> Any:
        raise RuntimeError("bug")

    cache = KeyCache(store.find_many_by_hash, store.find_many)
    stage = IngestStage(s, Metrics(), cache, cap.send, cap.dead_letter, parse=explode)
    assert await stage.handle([b'{"x": 1}']) == 0
    assert [letter["reason"] for letter in cap.letters] == ["internal_error"]


@pytest.mark.parametrize(
    "auth, status, forwarded",
    [("invalid", 401, True), ("", 401, True), ("", 403, True), ("revoked", 401, True),
     ("ok", 200, False), ("", 200, False)],
)  # fmt: skip
async def test_a_refused_unknown_key_is_dead_lettered_and_forwarded_by_network(
    store: KeyStore, auth: str, status: int, forwarded: bool
) -> None:
    """Nothing lost: the dead letter is written, and a refusal also feeds its network's count,
    partitioned by the network string; only the key's hash travels."""
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    native = {"ts": TS, "ip": "203.0.113.77", "key_hash": "cd" * 32, "status": status,
              "auth": auth or None}  # fmt: skip
    await stage.handle([orjson.dumps(native)])
    assert [letter["reason"] for letter in cap.letters] == ["unknown_key"]
    events = cap.events()
    assert bool(events) == forwarded
    if forwarded:
        (ev,) = events
        assert ev.key_id == "net:203.0.113.0/24" and ev.extra_key_hash == "cd" * 32
        assert ev.auth == (auth or "denied")
        (partition,) = {p for p, _ in cap.batches}
        assert partition == partition_for("net:203.0.113.0/24", 4)


@pytest.mark.parametrize(
    "auth, status, forwarded",
    [("missing", 401, True), ("invalid", 401, True), ("", 401, True), ("", 403, True),
     ("", 200, False), ("ok", 200, False), ("", 404, False), ("rate_limited", 429, False)],
)  # fmt: skip
async def test_a_refused_request_without_a_credential_keeps_its_dead_letter_and_counts(
    store: KeyStore, auth: str, status: int, forwarded: bool
) -> None:
    """``missing_key`` as before (reason, payload, detail), and a refusal is also an attempt
    for its network, without any key hash; a request served without a key (a public
    endpoint) is not."""
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    native = {"ts": TS, "ip": "203.0.113.77", "path": "/v1/x", "status": status,
              "user_agent": "curl/8.5", "auth": auth or None}  # fmt: skip
    message = orjson.dumps(native)
    assert await stage.handle([message]) == int(forwarded)
    (letter,) = cap.letters
    assert letter == {"reason": "missing_key", "source": "gateway.access", "payload": message,
                      "detail": '{"reason":"missing_key","detail":"no key_id, key hash or raw '
                      'key","index":null}'}  # fmt: skip
    events = cap.events()
    assert bool(events) == forwarded
    if forwarded:
        (ev,) = events
        assert (ev.key_id, ev.extra_key_hash, ev.path) == ("net:203.0.113.0/24", None, "/v1/x")
        assert (ev.auth, ev.user_agent, ev.status) == (auth or "denied", "curl/8.5", status)
        (partition,) = {p for p, _ in cap.batches}
        assert partition == partition_for("net:203.0.113.0/24", 4)


async def test_refused_kong_entries_without_credentials_count_beside_good_ones(
    store: KeyStore,
) -> None:
    """One Kong batch: served entries re-keyed by key, unauthenticated 401s dead-lettered with
    their element and forwarded per network, in the same pass."""
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    bare = kong("-", ip="198.51.100.9", response={"status": 401})
    del bare["authenticated_entity"]
    await stage.handle([orjson.dumps([kong("k1"), bare, bare, kong("k2")])])
    assert [(x["reason"], x["payload"]) for x in cap.letters] == [("missing_key", bare)] * 2
    assert sorted(e.key_id for e in cap.events()) == ["k1", "k2"] + ["net:198.51.100.0/24"] * 2


async def test_a_key_store_outage_is_waited_out(store: KeyStore) -> None:
    """Resolving retries while the key store is unavailable (core.retry), then returns."""
    stage = stage_for(store, Capture(), Metrics())
    stage.store_retry = RetryPolicy(base_delay_s=0.001, max_delay_s=0.002)
    calls: list[set[str]] = []

    async def flaky(keys: set[str]) -> dict[str, Any]:
        calls.append(keys)
        if len(calls) < 3:
            raise KeyStoreUnavailable("database down")
        return {k: "found" for k in keys}

    assert await stage._lookup(flaky, {"h1"}) == {"h1": "found"}
    assert calls == [{"h1"}] * 3


async def test_each_batch_says_which_source_partition_its_events_came_from(
    store: KeyStore,
) -> None:
    cap = Capture()
    stage = stage_for(store, cap, Metrics())
    msgs = [
        orjson.dumps([kong("k1"), kong("k2")]),
        orjson.dumps(kong("k1")),
        orjson.dumps(kong("k1")),
    ]
    assert await stage.handle(msgs, sources=[3, 3, 5], assigned=[3, 5, 7]) == 4
    runs = {}
    for partition, value in cap.batches:
        events, got, assigned = decode_sourced(value)
        assert assigned == [3, 5, 7]
        assert sum(n for _, n in got) == len(events)
        runs[partition] = tuple(got)
    k1, k2 = partition_for("k1", 4), partition_for("k2", 4)
    expected_k1 = ((3, 2), (5, 1)) if k1 != k2 else ((3, 3), (5, 1))
    assert runs[k1] == expected_k1

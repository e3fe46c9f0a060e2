"""Verification by hash and the once-per-key response, on SQLite and PostgreSQL with real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from core.keyformat import generate_key, hash_key, redact_key
from scanners.intake import TokenCandidate
from scanners.response import Finding, LeakContext, alert_id_for, classify
from worker.keystore.redis_view import RedisView
from worker.keystore.service import KeyService
from worker.keystore.store import KeyStore
from worker.response.leaks import LeakResponder

CTX = LeakContext(source="github", repository="acme/app", commit="c0ffee" * 6 + "abcd")


def cand(secret: str, kind: str = "platform", path: str = "config/.env", line: int = 3) -> Any:
    return TokenCandidate(
        rule_id="platform-secret-key" if kind == "platform" else "github-pat", kind=kind,
        key_hash=hash_key(secret), redacted=redact_key(secret), path=path, line=line,
    )  # fmt: skip


class Harness:
    def __init__(self, store: KeyStore, redis: RedisView) -> None:
        self.store, self.redis = store, redis
        self.announced: list[dict[str, Any]] = []
        self.published: list[Finding] = []
        self.keys = KeyService(store, redis, self._announce)

    async def _announce(self, message: dict[str, Any]) -> None:
        self.announced.append(message)

    async def _publish(self, finding: Finding) -> None:
        self.published.append(finding)

    def responder(self, act: bool = True) -> LeakResponder:
        return LeakResponder(self.keys, act=act, publish=self._publish)


@pytest.fixture
async def h(database_url: str, redis_url: str) -> AsyncIterator[Harness]:
    store = KeyStore(database_url)
    redis = RedisView(redis_url)
    yield Harness(store, redis)
    await redis.close()
    store.close()


async def test_live_key_revoked_once_with_a_critical_finding(h: Harness) -> None:
    new, rec = h.store.create("acme", "live")
    [f] = await h.responder().respond([cand(new.secret)], CTX)
    assert (f.status, f.action, f.applied, f.first) == ("active", "revoke", True, True)
    assert h.store.get(rec.key_id).status == "revoked"
    assert h.store.get(rec.key_id).revoked_reason == (
        f"leaked in public code: acme/app@{CTX.commit} config/.env:3"
    )
    assert await h.redis.is_revoked(new.key_hash)
    assert [(a["key_id"], a["action"]) for a in h.announced] == [(rec.key_id, "revoke")]
    d = f.to_dict()
    assert d["kind"] == "leak" and d["severity"] == "critical" and d["action"] == "revoke"
    assert d["signals"][0]["type"] == "leak.public_code"
    assert {k: d[k] for k in ("repository", "commit", "path", "line", "status", "key_id")} == {
        "repository": "acme/app", "commit": CTX.commit, "path": "config/.env", "line": 3,
        "status": "active", "key_id": rec.key_id,
    }  # fmt: skip
    assert d["redacted"] == redact_key(new.secret) and d["id"] == alert_id_for(new.key_hash)
    assert new.secret not in orjson.dumps(d).decode()
    assert [p.alert.id for p in h.published] == [d["id"]]

    # The same key pushed again (another repo, twice in one push): no second response.
    other = LeakContext(source="gitlab", repository="acme/fork", commit="e" * 40)
    again = await h.responder().respond([cand(new.secret), cand(new.secret, path="b")], other)
    assert [x.first for x in again] == [False, False]
    assert len(h.published) == 1
    assert [a.action for a in h.store.audit(rec.key_id)].count("revoke") == 1
    row = h.responder().ledger.get(new.key_hash)  # type: ignore[union-attr]
    assert row is not None and row.times_seen == 2 and row.repository == "acme/app"


async def test_test_key_is_reported_not_revoked(h: Harness) -> None:
    new, rec = h.store.create("acme", "test")
    [f] = await h.responder().respond([cand(new.secret)], CTX)
    assert (f.status, f.action, f.alert.severity) == ("active", "notify", "medium")
    assert not f.applied
    assert h.store.get(rec.key_id).status == "active"
    assert h.announced == [] and len(h.published) == 1


async def test_revoked_key_is_recorded_without_action(h: Harness) -> None:
    new, rec = h.store.create("acme", "live")
    await h.keys.revoke(rec.key_id, "earlier")
    h.announced.clear()
    [f] = await h.responder().respond([cand(new.secret)], CTX)
    assert (f.status, f.action, f.verified) == ("revoked", "log", True)
    assert h.announced == []
    assert h.store.get(rec.key_id).revoked_reason == "earlier"


async def test_unknown_keys_and_decoys_are_never_revoked(h: Harness) -> None:
    _kept, rec = h.store.create("acme", "live")
    stranger = generate_key("live")  # valid checksum, not in the store
    [f, g] = await h.responder().respond([cand(stranger.secret), cand("sk_live_" + "x1" * 20)], CTX)
    assert (f.status, f.action, f.verified) == ("unknown", "log", False)
    assert g.status == "unknown" and f.alert.key_id is None
    assert h.store.get(rec.key_id).status == "active" and h.announced == []
    assert {p.alert.extra["status"] for p in h.published} == {"unknown"}


async def test_third_party_is_reported_never_acted_on(h: Harness) -> None:
    token = "ghp_" + "A1b2C3d4" * 4 + "xyzw"
    [f] = await h.responder().respond([cand(token, kind="third_party")], CTX)
    assert (f.status, f.action) == ("unverified", "notify")
    assert f.alert.extra["leak_kind"] == "third_party"
    assert h.announced == []


async def test_without_act_nothing_is_revoked(h: Harness) -> None:
    new, rec = h.store.create("acme", "live")
    [f] = await h.responder(act=False).respond([cand(new.secret)], CTX)
    assert (f.status, f.action, f.applied) == ("active", "revoke", False)
    assert h.store.get(rec.key_id).status == "active"


def test_classify_without_record() -> None:
    from datetime import UTC, datetime

    assert classify("platform", None, datetime.now(UTC)) == ("unknown", "log", "low")

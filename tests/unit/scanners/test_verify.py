"""A push scanned end to end in-process: fake GitHub, the real engine, the key store.
Every leak context found and the live key revoked; test keys reported; decoys never revoked."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestServer

from core.keyformat import generate_key
from core.retry import RetryPolicy
from scanners.fetch.github import GitHubFetcher
from scanners.push import CodePush
from scanners.response import Finding
from scanners.verify import PushScanner
from tests.unit.scanners.codehosts import HostState, github_app, serve
from worker.keystore.service import KeyService
from worker.keystore.store import KeyStore
from worker.response.leaks import LeakResponder

A, B = "a" * 40, "b" * 40
CONTEXTS = {
    ".env": "STRIPE_KEY={k}",
    "config.json": '{{"api": {{"key": "{k}"}}}}',
    "values.yaml": "api:\n  key: '{k}'",
    "client.py": 'client = Client(api_key="{k}")',
    "docs/README.md": "curl -H 'Authorization: Bearer {k}' https://api.example.com",
    "deploy.sh": "curl 'https://api.example.com/v1?api_key={k_pct}'",
    "k8s/secret.yaml": "data:\n  API_KEY: {k_b64}",
    "bundle.min.js": "var a=1;" * 2000 + 'x="{k}";' + "var b=2;" * 2000,
    "escaped.json": '{{"cfg": "{{\\"key\\": \\"{k}\\"}}"}}',
}


def render(template: str, key: str) -> str:
    return template.format(k=key, k_pct=quote(key, safe=""),
                           k_b64=base64.b64encode(key.encode()).decode())  # fmt: skip


def as_patch(text: str) -> str:
    lines = text.split("\n")
    return f"@@ -0,0 +1,{len(lines)} @@\n" + "\n".join("+" + line for line in lines)


@pytest.fixture
async def env(sqlite_url: str) -> AsyncIterator[tuple[HostState, PushScanner, KeyStore, list[Any]]]:
    from scanners.engine import Engine  # the scan-engine branch's module

    state = HostState()
    server: TestServer = await serve(github_app(state))
    store = KeyStore(sqlite_url)
    published: list[Finding] = []

    async def publish(f: Finding) -> None:
        published.append(f)

    fetcher = GitHubFetcher(
        str(server.make_url("/")),
        None,
        RetryPolicy(attempts=2, base_delay_s=0.01, max_delay_s=0.05),
    )
    scanner = PushScanner(Engine.default(), {"github": fetcher},
                          LeakResponder(KeyService(store), publish=publish))  # fmt: skip
    yield state, scanner, store, published
    await scanner.close()
    await server.close()
    store.close()


def push() -> CodePush:
    return CodePush(source="github", repository="acme/app", project="acme/app", before=A,
                    after=B, ref="refs/heads/f", default_branch="main", commits=(B,))  # fmt: skip


async def test_every_context_found_and_live_keys_revoked(env: Any) -> None:
    state, scanner, store, published = env
    keys = {path: store.create("acme", "live") for path in CONTEXTS}
    test_key, test_rec = store.create("acme", "test")
    decoy = generate_key("live").secret
    state.files = [
        {"filename": p, "status": "added", "patch": as_patch(render(t, keys[p][0].secret))}
        for p, t in CONTEXTS.items()
    ] + [
        {"filename": "tests/fixtures.py", "status": "added",
         "patch": as_patch(f'TEST = "{test_key.secret}"\nDECOY = "{decoy}"')},
        {"filename": "big.txt", "status": "modified"},  # no patch: raw contents scanned
    ]  # fmt: skip
    raw_key, raw_rec = store.create("acme", "live")
    state.raw["big.txt@" + B] = "x\n" * 10 + f"token={raw_key.secret}\n"
    findings = await scanner.scan(push())
    for path, (_new, rec) in keys.items():
        assert store.get(rec.key_id).status == "revoked", path
    assert store.get(raw_rec.key_id).status == "revoked"
    assert store.get(test_rec.key_id).status == "active"
    by_key = {f.alert.key_id: f for f in findings}
    assert by_key[test_rec.key_id].action == "notify"
    assert by_key[None].status == "unknown"
    assert by_key[raw_rec.key_id].alert.extra["line"] == 11
    assert len(published) == len(CONTEXTS) + 3
    text = json.dumps([f.to_dict() for f in findings])
    for secret in [k.secret for k, _ in keys.values()] + [test_key.secret, decoy, raw_key.secret]:
        assert secret not in text


async def test_placeholders_and_removed_lines_are_ignored(env: Any) -> None:
    state, scanner, store, published = env
    new, rec = store.create("acme", "live")
    patch = (f'@@ -1,2 +1,2 @@\n-KEY = "{new.secret}"\n+KEY = "sk_live_your_key_here"\n'
             '+OTHER = "${STRIPE_KEY}"\n')  # fmt: skip
    state.files = [{"filename": "a.py", "status": "modified", "patch": patch}]
    assert await scanner.scan(push()) == []
    assert store.get(rec.key_id).status == "active" and published == []


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# A corpus written for these tests (contexts the engine's own tests do not use): each entry puts
# the key somewhere public in a push, in one of the encodings keys travel in.
FILE_CORPUS = {
    "web/index.html": '<meta name="api-key" content="{k}">',
    "infra/main.tf": 'variable "payments" {{ default = "{k}" }}',
    "Dockerfile": "ENV PAYMENTS_API_KEY={k}",
    "analysis.ipynb": '{{"cells": [{{"source": ["import os\\n", "key = \\"{k}\\"\\n"]}}]}}',
    ".npmrc": "//registry.example.com/:_authToken={k_b64}",
    "scripts/pull.sh": "git clone https://ci:{k}@git.example.com/acme/app.git",
    "assets/data.txt": "data:text/plain;base64,{k_b64}",
    "docs/redirect.md": "[login](https://auth.example.com/cb?next=%2Fhome%3Fkey%3D{k_pct})",
    "logs/sample.log": '{{"msg": "request", "body": "{{\\"api_key\\": \\"{k_json}\\"}}"}}',
    "k8s/double.yaml": "token: {k_b64b64}",
}


def encodings(key: str) -> dict[str, str]:
    return {"k": key, "k_b64": b64(key), "k_b64b64": b64(b64(key)),
            "k_pct": quote(key, safe="").replace("_", "%5F"),
            "k_json": key.replace("_", "\\\\u005f")}  # fmt: skip


async def test_unseen_corpus_messages_paths_and_encodings_revoked_nothing_shown(env: Any) -> None:
    state, scanner, store, published = env
    files = {path: store.create("acme", "live") for path in FILE_CORPUS}
    in_messages = [store.create("acme", "live") for _ in range(3)]
    in_paths = [store.create("acme", "live") for _ in range(2)]
    state.files = [
        {"filename": p, "status": "added",
         "patch": as_patch(t.format(**encodings(files[p][0].secret)))}
        for p, t in FILE_CORPUS.items()
    ] + [
        {"filename": f"keys/{in_paths[0][0].secret}.pem", "status": "added",
         "patch": "@@ -0,0 +1 @@\n+-----BEGIN NOTHING-----"},
        {"filename": "cfg/" + quote(in_paths[1][0].secret).replace("_", "%5F") + ".txt",
         "status": "added", "patch": "@@ -0,0 +1 @@\n+x"},
    ]  # fmt: skip
    messages = (
        ("c" * 40, f"Add payments\n\nTemporary key: {in_messages[0][0].secret}"),
        ("d" * 40, f"ci: token {b64(in_messages[1][0].secret)}"),
        ("e" * 40, "fix " + quote(in_messages[2][0].secret, safe="").replace("_", "%5F")),
    )
    findings = await scanner.scan(
        CodePush(source="github", repository="acme/app", project="acme/app", before=A, after=B,
                 ref="refs/heads/f", default_branch="main", commits=(B,), messages=messages)
    )  # fmt: skip
    every = [*files.values(), *in_messages, *in_paths]
    for _new, rec in every:
        assert store.get(rec.key_id).status == "revoked", rec.key_id
    found = {f.alert.key_id: f for f in findings}
    assert {found[r.key_id].alert.extra["location"] for _, r in in_messages} == {"commit_message"}
    assert {found[r.key_id].alert.extra["location"] for _, r in in_paths} == {"path"}
    assert found[in_messages[0][1].key_id].alert.extra["commit"] == "c" * 40
    shown = json.dumps([f.to_dict() for f in findings]) + json.dumps(
        [f.to_dict() for f in published]
    ) + repr([store.get(r.key_id) for _, r in every])  # fmt: skip
    for new, _rec in every:
        for form in encodings(new.secret).values():
            assert form not in shown
        assert new.secret[8:] not in shown


async def test_push_budget_defers_the_rest_and_reports_skips(env: Any) -> None:
    state, scanner, store, _published = env
    keys = [store.create("acme", "live") for _ in range(3)]
    state.files = [
        {"filename": f"f{i}.py", "status": "added", "patch": as_patch(f"K = '{k.secret}'")}
        for i, (k, _r) in enumerate(keys)
    ] + [{"filename": "gone.bin", "status": "added"}]  # no patch, and the raw file 404s
    deferred: list[Any] = []
    skipped: list[Any] = []

    async def on_deferred(push: CodePush, files: list[Any]) -> None:
        deferred.extend(files)

    async def on_skipped(push: CodePush, files: list[Any]) -> None:
        skipped.extend(files)

    scanner.budget_s, scanner.on_deferred, scanner.on_skipped = 0.0, on_deferred, on_skipped
    await scanner.scan(push())
    assert [f.skipped for f in skipped] == ["not_fetched"] and skipped[0].path == "gone.bin"
    assert {f.path for f in deferred} >= {"f0.py", "f1.py", "f2.py"}  # budget spent at once
    assert all(store.get(r.key_id).status == "active" for _k, r in keys)
    await scanner.scan_deferred(push(), deferred)  # the background scan finds them
    assert all(store.get(r.key_id).status == "revoked" for _k, r in keys)


async def test_third_party_flood_capped_and_reported_ours_always_answered(env: Any) -> None:
    state, scanner, store, _published = env
    live, rec = store.create("acme", "live")
    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    tokens = {"AKIA" + "".join(rng.choice(alphabet) for _ in range(16)) for _ in range(40)}
    body = "\n".join(sorted(tokens)) + f"\nKEY={live.secret}"
    state.files = [{"filename": "dump.txt", "status": "added", "patch": as_patch(body)}]
    skipped: list[Any] = []

    async def on_skipped(push: CodePush, files: list[Any]) -> None:
        skipped.extend(files)

    scanner.max_third_party, scanner.on_skipped = 10, on_skipped
    findings = await scanner.scan(push())
    assert sum(f.alert.extra["leak_kind"] == "third_party" for f in findings) == 10
    assert store.get(rec.key_id).status == "revoked"  # ours is answered whatever the cap
    assert [f.skipped for f in skipped] == [
        f"too_many_third_party_tokens: {len(tokens) - 10} not reported"
    ]

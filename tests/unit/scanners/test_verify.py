"""A push scanned end to end in-process: fake GitHub, the real engine, the key store.
Every leak context found and the live key revoked; test keys reported; decoys never revoked."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestServer

from scanners.fetch.github import GitHubFetcher
from scanners.fetch.http import RetryPolicy
from scanners.push import CodePush
from scanners.response import Finding, LeakResponder
from scanners.verify import PushScanner
from tests.unit.scanners.codehosts import HostState, github_app, serve
from worker.keystore.keyformat import generate_key
from worker.keystore.service import KeyService
from worker.keystore.store import KeyStore

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

    fetcher = GitHubFetcher(str(server.make_url("/")), None, RetryPolicy(2, 0.01, 0.05, 5))
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

"""The engine finds keys in every leak context we could think of, and nothing in decoys."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import quote

import pytest

from core.decoders import DecodeLimits
from core.keyformat import generate_key, hash_key
from scanners.engine import Candidate, Engine
from scanners.rules import load_rules

LIVE = generate_key("live").secret
TEST = generate_key("test", "restricted").secret
OLD_B64 = "sk_live_" + base64.urlsafe_b64encode(bytes(range(7, 39))).decode().rstrip("=")
OLD_HEX = "sk_live_" + bytes(range(40, 60)).hex()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONTEXTS: list[tuple[str, Callable[[str], str], str]] = [
    ("dotenv", lambda k: f"STRIPE_KEY={k}\n", "plain"),
    ("dotenv quoted", lambda k: f'export STRIPE_KEY="{k}"\n', "plain"),
    ("json", lambda k: json.dumps({"api": {"key": k}}), "plain"),
    ("yaml", lambda k: f"payments:\n  secret_key: {k}\n", "plain"),
    ("python", lambda k: f"client = Client(api_key='{k}')\n", "plain"),
    ("javascript", lambda k: f"const stripe = require('stripe')(`{k}`);", "plain"),
    ("go", lambda k: f'\tkey := "{k}"\n', "plain"),
    ("http header", lambda k: f"    Authorization: Bearer {k}\n", "plain"),
    ("curl -u", lambda k: f"curl https://api.example.com/v1/charges -u {k}:\n", "plain"),
    ("url query", lambda k: f"https://api.example.com/v1/x?api_key={k}&limit=3", "plain"),
    ("line start", lambda k: k, "plain"),
    ("line end", lambda k: f"the key is {k}", "plain"),
    ("crlf", lambda k: f"a=1\r\nKEY={k}\r\nb=2\r\n", "plain"),
    ("markdown code", lambda k: f"Use `{k}` in your requests.", "plain"),
    ("k8s secret", lambda k: f"kind: Secret\ndata:\n  api-key: {b64(k)}\n", "base64"),
    ("basic auth", lambda k: f"Authorization: Basic {b64(k + ':')}", "base64"),
    ("basic auth user", lambda k: f"Authorization: Basic {b64('acme:' + k)}", "base64"),
    (
        "urlsafe base64",
        lambda k: base64.urlsafe_b64encode(f"{{'k':'{k}'}}".encode()).decode(),
        "base64",
    ),
    ("double base64", lambda k: f"blob: {b64(b64(k))}", "base64"),
    ("percent _", lambda k: "?api_key=" + k.replace("_", "%5F"), "percent"),
    ("percent lower", lambda k: "?api_key=" + k.replace("_", "%5f"), "percent"),
    ("percent all", lambda k: "u=" + "".join(f"%{ord(c):02X}" for c in k), "percent"),
    ("json escaped", lambda k: json.dumps(k).replace("_", "\\u005f"), "json"),
    ("json all escaped", lambda k: '"' + "".join(f"\\u{ord(c):04x}" for c in k) + '"', "json"),
    ("json in percent", lambda k: "q=" + quote(json.dumps({"k": k})), "plain"),
    ("minified", lambda k: "var a=1;" * 12_500 + f'x="{k}";' + "b()" * 1000, "plain"),
]


def _platform(found: list[Candidate], key: str) -> list[Candidate]:
    return [c for c in found if c.kind == "platform" and c.key_hash == hash_key(key)]


@pytest.mark.parametrize(("name", "make", "encoding"), CONTEXTS, ids=[c[0] for c in CONTEXTS])
@pytest.mark.parametrize("key", [LIVE, TEST, OLD_B64, OLD_HEX], ids=["live", "test", "b64", "hex"])
def test_key_found_in_context(
    engine: Engine, name: str, make: Callable[[str], str], encoding: str, key: str
) -> None:
    found = _platform(engine.scan_text(make(key), path="f.txt"), key)
    assert len(found) == 1, name
    cand = found[0]
    assert cand.encoding == encoding
    assert cand.rule_id == "keywatch-api-key"
    assert cand.checksum_ok is (key in (LIVE, TEST))
    assert cand.environment == ("test" if key == TEST else "live")
    assert cand.path == "f.txt" and cand.line is not None and cand.column is not None


def test_line_and_column(engine: Engine) -> None:
    text = f"a\r\nbb\n\n  key = {LIVE}\nz {LIVE}"
    found = engine.scan_text(text)
    assert [(c.line, c.column) for c in found] == [(4, 9), (5, 3)]
    assert text.split("\n")[3][8:].startswith(LIVE)


def test_long_line_is_linear(engine: Engine) -> None:
    keys = [generate_key().secret for _ in range(50)]
    line = "".join(f"f({i});var k{i}='{k}';" + "x=1;" * 2000 for i, k in enumerate(keys))
    assert len(line) > 100_000
    found = engine.scan_text(line)
    assert {c.key_hash for c in found} == {hash_key(k) for k in keys}
    assert {c.line for c in found} == {1}


def test_dedup_by_hash_path_line(engine: Engine) -> None:
    text = f"{LIVE} {LIVE} {b64(LIVE)}\n{LIVE}"
    found = engine.scan_text(text)
    assert [(c.line, c.encoding) for c in found] == [(1, "plain"), (2, "plain")]


@pytest.mark.parametrize(
    "text",
    [
        "STRIPE_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "STRIPE_KEY=sk_live_your_key_here",
        "STRIPE_KEY=<YOUR_KEY>",
        "STRIPE_KEY=sk_live_<YOUR_KEY>",
        "STRIPE_KEY=${STRIPE_KEY}",
        "key: sk_live_{{ .Values.key }}",
        "api_key = 'sk_live_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6'",
        "api_key = 'sk_test_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9'",
        "sk_live_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLM",
        "sk_live_0000000000000000000000000000000000000000000000000",
        "sk_live_EXAMPLE1234567890EXAMPLE1234567890ab",
        "sk_live_ThisIsAnExampleKeyForTheDocumentation",
        "metric task_live_events_processed_counter_total",
        "if key.startswith('sk_live_') and len(key) > 20:",
        "PREFIXES = ('sk_live_', 'sk_test_', 'pk_live_')",
        f"Authorization: Basic {b64('sk_live_your_key_here:')}",
        "?api_key=sk%5Flive%5Fxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ],
)
def test_placeholders_and_decoys_ignored(engine: Engine, text: str) -> None:
    assert engine.scan_text(text) == []


THIRD_PARTY = [
    ("github-token", "ghp_" + "Q7hZ2mKpL9vX4cR8tYw3Nb6Fs1Dg5Jk0Ue7A"),
    ("github-token", "ghs_" + "Zr8Kd2Lp5Vx9Qm3Nt7Wb1Hf6Jc4Gs0Ya2Pex"),
    ("github-fine-grained-pat", "github_pat_" + "Ab3Cd5Ef7Gh9Ij1Kl3Mn5O_" + "Pq7R" * 14 + "s9T"),
    ("aws-access-key-id", "AKIA" + "Q7HZ2MKPL9VX4CR8"),
    ("aws-access-key-id", "ASIA" + "T3NB6FS1DG5JK0UE"),
    ("slack-token", "xoxb-" + "123456789012-1234567890123-" + "Zr8Kd2Lp5Vx9Qm3Nt7Wb1Hf6"),
]


@pytest.mark.parametrize(("rule_id", "token"), THIRD_PARTY)
def test_third_party_reported_as_third_party(engine: Engine, rule_id: str, token: str) -> None:
    (cand,) = engine.scan_text(f"TOKEN={token}\n")
    assert (cand.rule_id, cand.kind, cand.environment, cand.checksum_ok) == (
        rule_id,
        "third_party",
        None,
        None,
    )
    assert cand.key_hash == hash_key(token) and token not in cand.redacted


def test_bad_checksum_is_a_candidate_without_checksum_ok(engine: Engine) -> None:
    last = "A" if LIVE[-1] != "A" else "B"
    forged = LIVE[:-1] + last
    (cand,) = engine.scan_text(forged)
    assert cand.checksum_ok is False and cand.kind == "platform"


def test_secret_never_in_repr_str_or_dict(engine: Engine) -> None:
    (cand,) = engine.scan_text(f"K={LIVE}")
    assert cand.secret == LIVE
    for shown in (repr(cand), str(cand), json.dumps(cand.to_dict())):
        assert LIVE not in shown and LIVE[8:] not in shown
    assert cand.redacted.startswith("sk_live_") and len(cand.redacted) < 16


def test_depth_limit_applies_to_engine() -> None:
    shallow = Engine(load_rules(), DecodeLimits(max_depth=1))
    plain = Engine(load_rules(), DecodeLimits(max_depth=0))
    assert len(shallow.scan_text(b64(LIVE))) == 1
    assert shallow.scan_text(b64(b64(LIVE))) == []
    assert plain.scan_text(b64(LIVE)) == []
    assert len(plain.scan_text(LIVE)) == 1


@pytest.mark.parametrize(
    "encode",
    [
        b64,
        lambda t: "q=" + quote(t, safe="").replace("_", "%5F"),
        lambda t: '"' + t.replace("_", "\\u005f") + '"',
    ],
    ids=["base64", "percent", "json"],
)
def test_run_longer_than_the_decode_limit_is_decoded_in_chunks(
    encode: Callable[[str], str],
) -> None:
    small = Engine(load_rules(), DecodeLimits(max_bytes=1000))
    for pad in (10, 2000, 20_000):  # the key at the start, across chunk edges, far in
        for text in (encode("x" * pad + "." + LIVE), encode(LIVE + "." + "y" * pad)):
            found = small.scan_text(text)
            assert [c.key_hash for c in found] == [hash_key(LIVE)], pad


def test_urlsafe_base64_with_dash_and_underscore(engine: Engine) -> None:
    for i in range(200):  # find a key whose url-safe encoding has "-" or "_" in it
        key = generate_key().secret
        encoded = base64.urlsafe_b64encode(f"{i}:{key}".encode()).decode()
        if "-" in encoded or "_" in encoded:
            break
    found = _platform(engine.scan_text(f"token: {encoded}\n"), key)
    assert [c.encoding for c in found] == ["base64"]

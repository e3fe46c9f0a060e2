"""Placeholder and decoy heuristics."""

from __future__ import annotations

import random

import pytest

from core.keyformat import BASE62, BODY_LEN, b62encode, checksum
from scanners.placeholders import is_placeholder, is_sequential, shannon_entropy
from scanners.rules import load_rules


@pytest.mark.parametrize(
    "body",
    [
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "your_key_here_1234567890",
        "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6",
        "1a2b3c4d5e6f7g8h9i0j",
        "0123456789abcdefghijklmnop",
        "abcdefghijklmnopqrstuvwxyz",
        "zyx0000000000000000000abc",
        "EXAMPLEKEY123456789",
        "events_processed_counter_total",
        "ThisIsTheDocumentationKey",
        "${STRIPE_LIVE_KEY}xxxxxx",
        "REPLACE_WITH_REAL_VALUE_99",
    ],
)
def test_placeholders(body: str) -> None:
    assert is_placeholder(body, 3.0)


def test_random_bodies_are_not_placeholders() -> None:
    """Key bodies as issued (256 random bits in base62, with their checksum), from a seeded
    generator: the same 2,000 every run (a chance word in a random body is ~5e-6 per key)."""
    rnd = random.Random(13)
    for _ in range(2000):
        body = b62encode(rnd.getrandbits(256), BODY_LEN)
        body += checksum("sk_live_", body)
        assert not is_placeholder(body, 3.0), body[:4]
        assert not is_sequential(body)


@pytest.mark.parametrize("word", ["dummy", "mykey", "xxxxx", "Sample", "EXAMPLE"])
def test_a_valid_key_with_a_placeholder_word_in_its_body_is_still_found(word: str) -> None:
    """A real key's random body may hold a placeholder word; its checksum says it is a key of
    ours by format, so the scanner keeps it (the store decides whether it is live)."""
    rule = next(r for r in load_rules().rules if r.checksum == "keywatch-crc32")
    rnd = random.Random(word)
    body = word + "".join(rnd.choice(BASE62) for _ in range(BODY_LEN - len(word)))
    secret = "sk_live_" + body + checksum("sk_live_", body)
    assert is_placeholder(body, 3.0)  # the heuristics alone would drop it
    assert rule.accepts(secret)
    assert rule.find(f"key = {secret}\n") == [secret]
    forged = secret[:-1] + ("A" if secret[-1] != "A" else "B")  # checksum no longer matches
    assert not rule.accepts(forged)


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert is_placeholder("ab" * 12, 3.0)
    assert not is_placeholder("9f2a1c3e7b5d8046af31", None)

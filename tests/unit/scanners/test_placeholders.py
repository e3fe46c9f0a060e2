"""Placeholder and decoy heuristics."""

from __future__ import annotations

import pytest

from core.keyformat import generate_key
from scanners.placeholders import is_placeholder, is_sequential, shannon_entropy


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


def test_random_keys_are_not_placeholders() -> None:
    for _ in range(500):
        body = generate_key().secret[8:]
        assert not is_placeholder(body, 3.0), body[:4]
        assert not is_sequential(body)


def test_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert is_placeholder("ab" * 12, 3.0)
    assert not is_placeholder("9f2a1c3e7b5d8046af31", None)

"""Key format: prefixes, entropy, checksum, redaction."""

from __future__ import annotations

import re

import pytest

from core.keyformat import (
    BODY_LEN,
    CHECKSUM_LEN,
    environment_of,
    generate_key,
    has_valid_checksum,
    hash_key,
    new_key_id,
    redact_key,
)


@pytest.mark.parametrize(
    ("env", "kind", "prefix"),
    [("live", "secret", "sk_live_"), ("test", "secret", "sk_test_"),
     ("live", "publishable", "pk_live_"), ("live", "restricted", "rk_live_")],
)  # fmt: skip
def test_generated_keys_have_prefix_body_and_checksum(env: str, kind: str, prefix: str) -> None:
    new = generate_key(env, kind)
    assert new.secret.startswith(prefix)
    assert len(new.secret) == len(prefix) + BODY_LEN + CHECKSUM_LEN
    assert has_valid_checksum(new.secret)
    assert new.key_hash == hash_key(new.secret)
    assert environment_of(new.secret) == env


def test_keys_are_unique_and_repr_hides_the_secret() -> None:
    keys = {generate_key().secret for _ in range(2000)}
    assert len(keys) == 2000
    new = generate_key()
    assert new.secret not in repr(new)


def test_checksum_rejects_single_character_changes() -> None:
    secret = generate_key().secret
    body_char = secret[12]
    swapped = secret[:12] + ("A" if body_char != "A" else "B") + secret[13:]
    assert not has_valid_checksum(swapped)
    assert not has_valid_checksum(secret[:-1])
    assert not has_valid_checksum("sk_live_" + "a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6")
    assert not has_valid_checksum("xk_live_" + secret[8:])


def test_redaction_keeps_prefix_and_four_characters() -> None:
    secret = generate_key("test").secret
    red = redact_key(secret)
    assert red.startswith("sk_test_") and red.endswith("…")
    assert len(red) == len("sk_test_") + 5
    assert secret not in red


def test_key_ids_are_long_enough_not_to_collide() -> None:
    ids = {new_key_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(len(i) == 16 for i in list(ids)[:10])


def test_every_copy_of_the_prefixes_agrees_with_the_key_format() -> None:
    """The prefixes are defined once (keyformat); what spells them out must agree."""
    from core.keyformat import ENVIRONMENT_MARKS, KNOWN_PREFIXES, PREFIX_PATTERN
    from core.redaction import find_key, redact_text
    from worker.ingest.keys import _RAW_MARKS

    assert KNOWN_PREFIXES == ("pk_live_", "pk_test_", "rk_live_", "rk_test_", "sk_live_",
                              "sk_test_")  # fmt: skip
    # worker/ingest/keys.py spells these out on its hot path
    assert ENVIRONMENT_MARKS == ("_live_", "_test_") == _RAW_MARKS
    assert all(re.fullmatch(PREFIX_PATTERN, p) for p in KNOWN_PREFIXES)
    for prefix in KNOWN_PREFIXES:
        key = prefix + generate_key().secret[8:]
        assert find_key(f"x {key} y") == key and key not in redact_text(key)

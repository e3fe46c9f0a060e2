"""Key-id fields that carry a raw key inside other text are hashed, never kept (found by the
property tests: a Tyk ``api_key`` of ``Bearer sk_live_…``)."""

from __future__ import annotations

import pytest

from core.keyformat import generate_key, hash_key
from worker.ingest.keys import key_id_field


@pytest.mark.parametrize("template", ["Bearer {}", "ApiKey {}", "token={}", " {} ", "x{}"])
def test_raw_key_inside_an_id_field_is_hashed(template: str) -> None:
    secret = generate_key().secret
    key_id, key_hash = key_id_field(template.format(secret))
    assert key_id is None
    assert key_hash == hash_key(secret)


def test_short_bearer_value_is_not_taken_as_a_plain_id() -> None:
    secret = "sk_live_" + "A" * 49  # "Bearer " + this is 64 characters, the plain-id limit
    key_id, key_hash = key_id_field("Bearer " + secret)
    assert key_id is None and key_hash == hash_key(secret)


def test_ordinary_ids_are_kept() -> None:
    assert key_id_field("key-5e9d9544") == ("key-5e9d9544", None)

"""Finding raw keys in logged requests, hashing them at once, and scrubbing them from paths.

Where keys travel (seed design): ``Authorization: Bearer|ApiKey|Token <key>``, ``Authorization:
Basic base64(key:)`` (the key is the user part), ``X-API-Key``-style headers, and the query string
(``api_key``, ``apiKey``, ``key``, ``access_token``): the last one is itself a finding.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final
from urllib.parse import unquote_plus

from core.keyformat import ENVIRONMENT_MARKS, hash_key
from core.redaction import find_key, redact_text
from worker.ingest.model import RawAccess, Rejected

# Query parameter names compared lower-cased (apiKey -> apikey).
QUERY_KEY_PARAMS: Final = frozenset({"api_key", "apikey", "api-key", "key", "access_token"})
# Header names as Kong/Envoy log them (lower-case); Kong key-auth's default key name is "apikey".
HEADER_KEY_NAMES: Final = ("x-api-key", "apikey", "api-key", "x-apikey")
_TOKEN_SCHEMES: Final = ("bearer", "apikey", "token", "api-key")
_PLACEHOLDERS: Final = frozenset({"", "-", "REDACTED", "[REDACTED]", "null"})
REDACTED: Final = "REDACTED"
MAX_PATH: Final = 2048
MAX_KEY: Final = 512  # longer "keys" are garbage; hashing them would only cost time
_HEX: Final = frozenset("0123456789abcdef")
_RAW_MARKS: Final = ENVIRONMENT_MARKS
_CACHE_MAX: Final = 100_000
_plain_ids: set[str] = set()  # ids already checked: a key sends many requests


def first_str(value: Any) -> str | None:
    """A header value as a string: repeated headers arrive as lists in Kong's log."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return None


def usable(raw: str | None) -> str | None:
    """The key text, or None for placeholders gateways write instead of a key."""
    if raw is None:
        return None
    raw = raw.strip()
    if raw in _PLACEHOLDERS or len(raw) > MAX_KEY:
        return None
    return raw


def key_from_authorization(value: str) -> str | None:
    """The key in an Authorization header value (Bearer/ApiKey/Token/Basic), or None."""
    scheme, _, rest = value.strip().partition(" ")
    scheme = scheme.lower()
    if scheme in _TOKEN_SCHEMES:
        return usable(rest)
    if scheme == "basic":
        return _basic_user(rest.strip())
    return None


def _basic_user(b64: str) -> str | None:
    """Basic credentials carry the key as the user (or, with an empty user, the password)."""
    if len(b64) > MAX_KEY * 2:
        return None
    try:
        text = base64.b64decode(b64, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, _, password = text.partition(":")
    return usable(user) or usable(password)


def key_from_headers(headers: Any) -> str | None:
    """A raw key in a dict of (lower-case) request headers, or None."""
    if headers.__class__ is not dict:
        return None
    auth = headers.get("authorization")
    if auth is not None and auth != "REDACTED":  # Kong's placeholder, the usual case
        text = first_str(auth)
        key = key_from_authorization(text) if text else None
        if key:
            return key
    for name in HEADER_KEY_NAMES:
        value = headers.get(name)
        if value is not None:
            key = usable(first_str(value))
            if key:
                return key
    return None


def key_from_query_dict(query: Any) -> str | None:
    """A raw key in a parsed query string (Kong's ``request.querystring``), or None."""
    if not isinstance(query, dict) or not query:
        return None
    for name, value in query.items():
        if isinstance(name, str) and name.lower() in QUERY_KEY_PARAMS:
            key = usable(first_str(value))
            if key:
                return key
    return None


def split_path(path: Any) -> tuple[str, str | None]:
    """(path with any query-string key redacted, the raw key found there or None)."""
    if path.__class__ is not str:
        return "", None
    if "?" not in path and "_" not in path and "%" not in path and len(path) <= MAX_PATH:
        return path, None  # no query, nothing key-shaped, nothing percent-encoded
    if len(path) > MAX_PATH:
        path = path[:MAX_PATH]
    base, sep, query = path.partition("?")
    if not sep:
        return _scrub(path), None
    if "%" not in query and "+" not in query:
        low = query.lower()
        if "key" not in low and "access_token" not in low:  # no key parameter can be there
            return _scrub(path), None
    found: str | None = None
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and _param_name(name) in QUERY_KEY_PARAMS:
            key = usable(unquote_plus(value))
            if key:
                found = found or key
                parts[i] = f"{name}={REDACTED}"
    return _scrub(base + "?" + "&".join(parts)), found


def _param_name(name: str) -> str:
    return (unquote_plus(name) if "%" in name or "+" in name else name).lower()


def _scrub(path: str) -> str:
    """Catch key-shaped text anywhere else in the path (e.g. /keys/sk_live_…, sk%5Flive%5F…)."""
    return redact_text(path) if "_" in path or "%" in path else path


def hash_raw(raw: str) -> str:
    """SHA-256 hex of a raw key: the only form that leaves the parser."""
    return hash_key(raw)


def second_key(primary: str | None, other: str | None) -> str | None:
    """The hash of ``other`` when a request carried it besides a different ``primary`` key."""
    if primary is None or other is None or other == primary:
        return None
    return hash_raw(other)


def looks_raw(value: str) -> bool:
    """True when a value given as a key *id* is really one of our keys (sk_live_… and friends)."""
    return len(value) > 16 and value[2:8] in _RAW_MARKS


def key_hash_field(value: Any) -> str | None:
    """A ``key_hash`` field: 64 hex digits (case-insensitive), None when absent."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) != 64:
        raise Rejected("invalid_key_hash", "key_hash is not 64 hex digits")
    digest = value.lower()
    if not _HEX.issuperset(digest):
        raise Rejected("invalid_key_hash", "key_hash is not 64 hex digits")
    return digest


def _plain(value: Any) -> bool:
    """An ordinary id: a short trimmed string, not a placeholder, not one of our raw keys."""
    return (
        value.__class__ is str
        and 0 < len(value) <= 64
        # a raw key anywhere in it, e.g. "Bearer sk_live_…": ENVIRONMENT_MARKS spelled out on
        # the hot path (tests/unit/keystore/test_keyformat.py checks they agree)
        and "_live_" not in value
        and "_test_" not in value
        and value[0] > " "
        and value[-1] > " "
        and value not in _PLACEHOLDERS
    )


def key_id_field(value: Any, field: str = "key_id") -> tuple[str | None, str | None]:
    """(key id, key hash) from a key-id field; a raw key given as an id is hashed instead."""
    if value is None:
        return None, None
    if value.__class__ is str and value in _plain_ids:
        return value, None
    if _plain(value):
        if len(_plain_ids) >= _CACHE_MAX:
            _plain_ids.clear()
        _plain_ids.add(value)
        return value, None
    if value.__class__ is int:
        value = str(value)
    if not isinstance(value, str):
        raise Rejected("invalid_key_id", f"{field} is a {type(value).__name__}")
    value = value.strip()
    if value in _PLACEHOLDERS:
        return None, None
    if len(value) > 128:
        if len(value) <= MAX_KEY:
            return None, hash_raw(value)  # no id is that long: treat it as a key, never keep it
        raise Rejected("invalid_key_id", f"{field} is too long")
    if looks_raw(value):
        return None, hash_raw(value)
    embedded = find_key(value)  # "Bearer sk_live_…" and the like: hash the key, keep nothing
    if embedded is not None:
        return None, hash_raw(key_from_authorization(value) or embedded)
    return value, None


def text(value: Any, limit: int = 512) -> str:
    """A short string field; numbers are accepted, anything else becomes ''."""
    if value.__class__ is str:
        out: str = value
        if "_live_" in out or "_test_" in out:  # a key pasted into a free-text field
            out = redact_text(out)
        return out if len(out) <= limit else out[:limit]
    if value.__class__ is int:
        return str(value)
    return ""


def status(value: Any) -> int:
    """An HTTP status as an int; strings like "200" are accepted, anything else is 0."""
    if value.__class__ is int:
        return value if 0 <= value < 1000 else 0
    if isinstance(value, str) and len(value) <= 3 and value.isascii() and value.isdigit():
        return int(value)
    return 0


def identity(
    id_value: Any, hash_value: Any, raw_key: str | None, field: str = "key_id"
) -> tuple[str | None, str | None]:
    """(key id, key hash) from an id field, a hash field and a raw key; one must be present."""
    plain = id_value.__class__ is str and id_value in _plain_ids  # fast path: checked before
    if plain and raw_key is None and hash_value is None:
        return id_value, None
    key_id, hashed = key_id_field(id_value, field)
    key_hash = hashed if hash_value is None else key_hash_field(hash_value) or hashed
    if key_hash is None and raw_key is not None:
        key_hash = hash_raw(raw_key)
    if key_id is None and key_hash is None:
        raise Rejected("missing_key", missing_detail(field))
    return key_id, key_hash


def identity_or_none(
    id_value: Any, hash_value: Any, raw_key: str | None, field: str = "key_id"
) -> tuple[str | None, str | None]:
    """``identity``, but ``(None, None)`` when there is none: the caller builds the whole
    record and raises ``credential_less(record)``, so a request without a credential keeps
    its time, client, status and verdict (ingest dead-letters it as before and counts a
    refused one for its network, worker.authfail). The typed fast path calls ``identity``
    itself, unchanged: it declines a message with a reject."""
    plain = id_value.__class__ is str and id_value in _plain_ids  # ``identity``'s fast path
    if plain and raw_key is None and hash_value is None:
        return id_value, None  # without a second call
    try:
        return identity(id_value, hash_value, raw_key, field)
    except Rejected as exc:
        if exc.reason != "missing_key":
            raise
        return None, None


def missing_detail(field: str) -> str:
    """The ``missing_key`` detail: the same wherever the parser noticed it."""
    return f"no {field}, key hash or raw key"


def credential_less(raw: RawAccess, field: str = "key_id") -> Rejected:
    """``missing_key`` for a record without a key id or hash, carrying the record."""
    return Rejected("missing_key", missing_detail(field), raw)

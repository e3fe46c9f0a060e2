"""The API key format: prefix, base62 body from a CSPRNG, CRC32 checksum.

A key looks like ``sk_live_<43 base62 chars><6 base62 chars>``: the body carries 32 random bytes
(256 bits), the tail is the CRC32 of ``prefix + body`` in base62, so a scanner can reject
look-alikes offline without touching the key store (ref: GitHub's token format, 2021:
"30 characters of entropy + 6 character CRC32 checksum, base62"). Keys without a valid checksum
still verify by hash: older keys and other issuers' keys keep working.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Final

BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LEN: Final = 43  # ceil(256 / log2(62)): 32 random bytes
CHECKSUM_LEN: Final = 6  # ceil(32 / log2(62)): one CRC32
KEY_BYTES: Final = 32

# The one definition of our key prefixes: the scanner's rules, the redaction and the gateway's
# prefix check all derive theirs from these. pk_ keys are publishable, rk_ keys are restricted.
KIND_TAGS: Final = {"secret": "sk", "publishable": "pk", "restricted": "rk"}
ENVIRONMENTS: Final = ("live", "test")
PREFIXES: Final = {
    (kind, env): f"{tag}_{env}_" for kind, tag in KIND_TAGS.items() for env in ENVIRONMENTS
}
KNOWN_PREFIXES: Final = tuple(sorted(set(PREFIXES.values())))
# A regex matching any prefix ("(?:sk|pk|rk)_(?:live|test)_"), for patterns that embed it.
PREFIX_PATTERN: Final = f"(?:{'|'.join(KIND_TAGS.values())})_(?:{'|'.join(ENVIRONMENTS)})_"
# "_live_", "_test_": a cheap first look for a key in free text
ENVIRONMENT_MARKS: Final = tuple(f"_{env}_" for env in ENVIRONMENTS)
_PREFIX_RE: Final = re.compile("^" + PREFIX_PATTERN)


def b62encode(value: int, width: int) -> str:
    """Base62-encode a non-negative integer, left-padded with '0' to ``width``."""
    chars = []
    while value:
        value, rem = divmod(value, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars)).rjust(width, "0")


def checksum(prefix: str, body: str) -> str:
    """The 6-character base62 CRC32 of ``prefix + body``."""
    return b62encode(zlib.crc32((prefix + body).encode()), CHECKSUM_LEN)


def hash_key(key: str) -> str:
    """SHA-256 hex digest of the full key: the only form keywatch stores."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def hashes_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode(), b.encode())


def split_prefix(key: str) -> tuple[str, str]:
    """Split a key into (prefix, rest); the prefix is '' when the key has none we know."""
    m = _PREFIX_RE.match(key)
    if not m:
        return "", key
    return m.group(0), key[m.end() :]


def has_valid_checksum(key: str) -> bool:
    """True when ``key`` is one of ours by format: known prefix, body length and CRC32."""
    prefix, rest = split_prefix(key)
    if not prefix or len(rest) != BODY_LEN + CHECKSUM_LEN:
        return False
    body, tail = rest[:BODY_LEN], rest[BODY_LEN:]
    if any(c not in BASE62 for c in rest):
        return False
    return hmac.compare_digest(checksum(prefix, body), tail)


def environment_of(key_or_prefix: str) -> str | None:
    """'live' or 'test' from a key's prefix, None when the prefix is not ours."""
    prefix, _ = split_prefix(key_or_prefix)
    if not prefix:
        return None
    return "live" if "_live_" in prefix else "test"


def redact_key(key: str) -> str:
    """A display form that cannot be used: the prefix and four body characters."""
    prefix, rest = split_prefix(key)
    if prefix:
        return f"{prefix}{rest[:4]}…"
    return f"{key[:4]}…" if len(key) > 8 else "…"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key. ``secret`` is shown once and never stored."""

    secret: str
    key_hash: str
    prefix: str

    def __repr__(self) -> str:  # never let the secret reach a log through repr()
        return f"NewKey(prefix={self.prefix!r}, key_hash={self.key_hash[:12]}…)"


def generate_key(environment: str = "live", kind: str = "secret") -> NewKey:
    """Generate a key of ``kind`` for ``environment`` from the OS CSPRNG."""
    try:
        prefix = PREFIXES[(kind, environment)]
    except KeyError:
        raise ValueError(f"no key prefix for kind={kind!r} environment={environment!r}") from None
    body = b62encode(int.from_bytes(secrets.token_bytes(KEY_BYTES), "big"), BODY_LEN)
    secret = prefix + body + checksum(prefix, body)
    return NewKey(secret=secret, key_hash=hash_key(secret), prefix=prefix)


def new_key_id() -> str:
    """A random 16-hex-character key id (64 bits; the store also enforces uniqueness).

    The seed derived 8 hex characters from the hash: 32 bits collide by the birthday bound
    around 77k keys, and tie the public id to the secret's hash.
    """
    return secrets.token_hex(8)

"""One redaction function for logs, alerts, findings and messages: no full key leaves the process.

Anything shaped like one of our keys (``sk_live_…`` and friends), a bearer credential or a
well-known third-party token is cut to a short recognisable stub. Our keys are also found in the
encodings the leak scanner decodes (percent-encoding, JSON ``\\u`` escapes, base64 and base64 of
base64, with ``core.decoders``): the whole encoded span becomes ``[REDACTED <encoding>]``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from core.decoders import DecodeLimits, decode, encoded_keywords, span_around
from core.keyformat import KNOWN_PREFIXES, PREFIX_PATTERN, redact_key

_SECRET_PATTERNS: Final = re.compile(
    PREFIX_PATTERN + r"[A-Za-z0-9_\-]{6,}"  # ours, with or without checksum
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|whsec_[A-Za-z0-9+/=]{10,}"  # Standard Webhooks secrets
)
_BEARER: Final = re.compile(r"(?i)\b(bearer|basic|apikey|token)\s+([A-Za-z0-9._~+/=\-]{12,})")


_OUR_KEY: Final = re.compile(PREFIX_PATTERN + r"[A-Za-z0-9_\-]{6,}")


def find_key(text: str) -> str | None:
    """The first substring of ``text`` shaped like one of our keys (``sk_live_…``), if any."""
    m = _OUR_KEY.search(text)
    return m.group(0) if m else None


_LIMITS: Final = DecodeLimits()  # the scanner's defaults: base64 nested twice
_KEYWORDS: Final = set(KNOWN_PREFIXES)
_ENCODED: Final = encoded_keywords(_KEYWORDS, _LIMITS.max_depth)  # form -> encoding
# percent-encoding applied twice (%255F): a proxy re-encoding a logged URL does that
_ENCODED.update(
    {f.replace("%", "%25"): "percent" for f, e in list(_ENCODED.items()) if e == "percent"}
)
_ENCODED_RE: Final = re.compile(
    "|".join(re.escape(f) for f in sorted(_ENCODED, key=len, reverse=True))
)


def redact_text(text: str) -> str:
    """Replace every key-shaped substring of ``text`` (plain or encoded) by a redacted form."""
    if _ENCODED_RE.search(text) is not None:
        text = _redact_encoded(text, _LIMITS.max_depth)
    text = _SECRET_PATTERNS.sub(lambda m: redact_key(m.group(0)), text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {m.group(2)[:4]}…", text)


def _redact_encoded(text: str, depth: int) -> str:
    """Cut every encoded span that decodes to (an encoding of) one of our keys."""
    spans: list[tuple[int, int, str]] = []
    for m in _ENCODED_RE.finditer(text):
        if spans and m.start() < spans[-1][1]:
            continue  # inside a span already cut
        encoding = _ENCODED.get(m.group(0), "percent" if m.group(0)[0] == "%" else "json")
        where = span_around(text, m.start(), m.end(), encoding, _LIMITS)
        if where is None:
            spans.append((m.start(), m.end(), encoding))  # too long to decode: cut the hit
            continue
        decoded = decode(text[where[0] : where[1]], encoding, _LIMITS)
        if decoded is not None and _holds_key(decoded, depth - 1):
            spans.append((where[0], where[1], encoding))
    for start, end, encoding in reversed(spans):
        text = f"{text[:start]}[REDACTED {encoding}]{text[end:]}"
    return text


def _holds_key(decoded: str, depth: int) -> bool:
    if _OUR_KEY.search(decoded) is not None:
        return True
    if depth <= 0 or _ENCODED_RE.search(decoded) is None:
        return False
    return _redact_encoded(decoded, depth) != decoded


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure (dicts, lists, scalars)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value

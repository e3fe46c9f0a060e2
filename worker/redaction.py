"""One redaction function for logs, alerts, findings and messages: no full key leaves the process.

Anything shaped like one of our keys (``sk_live_…`` and friends), a bearer credential or a
well-known third-party token is cut to a short recognisable stub.
"""

from __future__ import annotations

import re
from typing import Any, Final

from worker.keystore.keyformat import redact_key

_SECRET_PATTERNS: Final = re.compile(
    r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9_\-]{6,}"  # ours, with or without checksum
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub
    r"|xox[abposr]-[A-Za-z0-9\-]{10,}"  # Slack
    r"|whsec_[A-Za-z0-9+/=]{10,}"  # Standard Webhooks secrets
)
_BEARER: Final = re.compile(r"(?i)\b(bearer|basic|apikey|token)\s+([A-Za-z0-9._~+/=\-]{12,})")


_OUR_KEY: Final = re.compile(r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9_\-]{6,}")


def find_key(text: str) -> str | None:
    """The first substring of ``text`` shaped like one of our keys (``sk_live_…``), if any."""
    m = _OUR_KEY.search(text)
    return m.group(0) if m else None


def redact_text(text: str) -> str:
    """Replace every key-shaped substring of ``text`` by its redacted form."""
    text = _SECRET_PATTERNS.sub(lambda m: redact_key(m.group(0)), text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {m.group(2)[:4]}…", text)


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like structure (dicts, lists, scalars)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_obj(k): redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value

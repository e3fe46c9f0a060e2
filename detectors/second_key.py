"""``transport.second_key`` (medium): a request carried another key besides the authenticated one.

The gateway authenticated this key, yet the client also sent a different key (a header or the
query string). Someone holding two keys, one of them possibly this key stolen, is worth a look;
the event still counts against the authenticated key (worker/ingest/precedence.py).
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile

TYPE = "transport.second_key"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal every event the ingest found a second key on (the incident keeps one alert)."""
    if event.extra_key_hash is None:
        return []
    path = event.path.split("?", 1)[0]  # never the query: it may hold a key
    evidence = {"other_key_sha256_prefix": event.extra_key_hash[:12], "method": event.method,
                "path": path, "gateway": event.gateway}  # fmt: skip
    return [Signal(TYPE, "medium", evidence)]

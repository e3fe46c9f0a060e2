"""``transport.key_in_query`` (low): the raw key travelled in a URL query string.

Query strings end up in proxy, CDN and browser logs; the key should be sent in a header.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile

TYPE = "transport.key_in_query"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal every event the ingest flagged (the incident keeps one alert per cooldown)."""
    if not event.key_in_query:
        return []
    path = event.path.split("?", 1)[0]  # never the query: it held the key
    return [Signal(TYPE, "low", {"method": event.method, "path": path, "gateway": event.gateway})]

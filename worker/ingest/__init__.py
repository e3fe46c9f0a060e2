"""Access-log ingest: pure parsing of gateway log messages into ``RawAccess`` records.

No Kafka and no Faust here: agents call ``parse_message`` per message and ``KeyResolver`` per
record. Raw keys never leave this package: they are hashed where they are found.
"""

from worker.ingest.model import ParseResult, RawAccess, Reject, Rejected
from worker.ingest.parse import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_EVENTS,
    FORMATS,
    detect,
    parse_message,
)
from worker.ingest.resolve import KeyInfo, KeyResolver

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_EVENTS",
    "FORMATS",
    "KeyInfo",
    "KeyResolver",
    "ParseResult",
    "RawAccess",
    "Reject",
    "Rejected",
    "detect",
    "parse_message",
]

"""``parse_message``: one Kafka message value (an event or a JSON array of events) to records.

The format is detected per message from the first object's shape (or forced). One bad element
of an array rejects only that element, and its reject carries the element, so the message is
parsed once whatever is rejected. Work per message is bounded: a message over ``max_bytes`` or an
array over ``max_events`` elements is rejected whole (one reject) before any element is parsed.
Nothing raises on bad input: every problem becomes a ``Reject`` with a reason code the caller
counts and dead-letters. Kong and native messages take a fast path first (``worker.ingest.typed``:
JSON decoded into structs); it gives the same result as the dict path below or declines.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

import orjson

from worker.ingest import typed
from worker.ingest.formats import aws, envoy, kong, native, tyk
from worker.ingest.model import ParseResult, RawAccess, Reject, Rejected

DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024  # the ingest consumer fetches 8 MiB per partition
DEFAULT_MAX_EVENTS: Final = 10_000  # Kong's batches are ~1-1,000 events; AWS/Envoy send 1
FORMATS: Final[dict[str, ModuleType]] = {m.NAME: m for m in (aws, envoy, kong, native, tyk)}
# Detection order: the most specific shapes first (Tyk and Envoy both have response_code).
_DETECT: Final = (native, kong, tyk, aws, envoy)
UNKNOWN: Final = "unknown"

Parser = Callable[[dict[str, Any]], RawAccess]


def parse_message(
    raw: bytes | bytearray | memoryview | str,
    fmt: str = "auto",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_events: int = DEFAULT_MAX_EVENTS,
) -> ParseResult:
    """Parse one message value; ``fmt`` is ``auto`` or one of ``FORMATS`` (else ValueError)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected auto or one of {sorted(FORMATS)}")
    size = len(raw)
    if size > max_bytes:
        return _whole(fmt, "too_large", f"message of {size} bytes exceeds {max_bytes}")
    fast = typed.parse(raw, fmt, max_events)  # Kong and native arrays, into structs
    if fast is not None:
        return fast
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "invalid_utf8" if "UTF-8" in exc.msg else "invalid_json"
        return _whole(fmt, reason, f"{exc.msg[:80]} at byte {exc.pos}")
    if doc.__class__ is list:
        if len(doc) > max_events:
            return _whole(fmt, "too_many_events", f"{len(doc)} events exceed {max_events}")
        return _parse_items(doc, fmt, True)
    return _parse_items([doc], fmt, False)


def _whole(fmt: str, reason: str, detail: str) -> ParseResult:
    return ParseResult(fmt if fmt != "auto" else UNKNOWN, rejects=[Reject(reason, detail)])


def detect(obj: dict[str, Any]) -> str | None:
    """The name of the format ``obj`` looks like, or None."""
    for module in _DETECT:
        if module.matches(obj):
            name: str = module.NAME
            return name
    return None


def _parse_items(items: list[Any], fmt: str, is_array: bool) -> ParseResult:
    name = fmt if fmt != "auto" else _detect_items(items)
    result = ParseResult(name)
    rejects = result.rejects
    if name == UNKNOWN:
        for i, item in enumerate(items):
            bad = "unknown_format" if item.__class__ is dict else "not_an_object"
            rejects.append(_reject(bad, "no parser recognises the event", i, item, is_array))
        return result
    parse: Parser = FORMATS[name].parse
    events = result.events
    for i, item in enumerate(items):
        if item.__class__ is not dict:
            kind = type(item).__name__
            rejects.append(_reject("not_an_object", f"event is a {kind}", i, item, is_array))
            continue
        try:
            events.append(parse(item))
        except Rejected as exc:
            rejects.append(_reject(exc.reason, exc.detail, i, item, is_array, exc.record))
    return result


def _reject(
    reason: str, detail: str, index: int, item: Any, is_array: bool, record: RawAccess | None = None
) -> Reject:
    """A reject of one array element (carrying it), or of the whole one-event message."""
    if is_array:
        return Reject(reason, detail, index, item, record)
    return Reject(reason, detail, record=record)


def _detect_items(items: list[Any]) -> str:
    """Detect from the first object of the message (the other elements are assumed alike)."""
    for item in items:
        if item.__class__ is dict:
            return detect(item) or UNKNOWN
    return UNKNOWN

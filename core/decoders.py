"""Decoders for keys hidden in encoded text: base64, percent-encoding, JSON string escapes.

The engine never decodes ordinary code; it decodes only spans that could hide a key:

- percent-encoding and JSON escapes: the prefilter also looks for the encoded form of each
  keyword's punctuation (``%5F``, ``\\u005f``; the whole keyword when it has none, ``%41%4B…``)
  and the span around such a hit is decoded (``?api_key=sk%5Flive%5F…``, ``"sk\\u005flive…"``).
- base64: a keyword of n bytes always encodes to the same characters wherever it sits, except
  the few characters that straddle its ends; for each of the three byte alignments we keep the
  fully determined characters ("signatures"), standard and url-safe alphabets, nested up to
  ``max_depth`` (base64 of base64). Signatures are searched only inside base64 runs of
  plausible length (``base64_runs``: a C-speed ``bytes.translate`` + ``find``), because an
  automaton holding them ran 2-4x slower over ordinary code than one holding the plain keywords.
  A Kubernetes Secret value or a Basic auth header is such a run.

``DecodeLimits`` caps recursion depth and the size of each decoded blob.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

ENCODINGS: Final = ("base64", "percent", "json")
_MIN_SIGNATURE: Final = 5  # shorter base64 signatures would hit random base64 blobs too often

# Characters that may belong to an encoded span, per encoding.
_SPAN: Final = {
    "base64": re.compile(r"[A-Za-z0-9+/_-]*"),
    "percent": re.compile(r"[A-Za-z0-9%._~+-]*"),
    "json": re.compile(r"[A-Za-z0-9_\\/+=.-]*"),
}
_B64_PAD: Final = re.compile(r"={0,2}")
_JSON_ESCAPE: Final = re.compile(r"\\(u[0-9A-Fa-f]{4}|[\\/\"bfnrt])")
_JSON_SIMPLE: Final = {
    "\\": "\\",
    "/": "/",
    '"': '"',
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """How deep decoders recurse and how large one decoded blob may be."""

    max_depth: int = 2
    max_bytes: int = 1_048_576

    def max_span(self, encoding: str) -> int:
        """The longest encoded span (in characters) whose decoding fits ``max_bytes``."""
        if encoding == "base64":
            return self.max_bytes * 4 // 3 + 4
        return self.max_bytes * 6  # percent "%XX" and JSON "\uXXXX" are at most 6 per char


def base64_signatures(data: bytes) -> set[str]:
    """Base64 substrings present in any encoding of a text containing ``data``."""
    sigs: set[str] = set()
    for align in range(3):
        encoded = base64.b64encode(b"\0" * align + data + b"\0\0").decode()
        # Char i covers bits [6i, 6i+6): keep those inside data's bits [8*align, 8*(align+len)).
        first = -(-8 * align // 6)
        last = (8 * (align + len(data))) // 6
        sig = encoded[first:last]
        if len(sig) >= _MIN_SIGNATURE:
            sigs.add(sig)
            sigs.add(sig.translate(str.maketrans("+/", "-_")))
    return sigs


def _escaped(keyword: str, escape: str) -> set[str]:
    """Escaped forms of the keyword's punctuation, or of the whole keyword when it has none."""
    special = {c for c in keyword if not c.isalnum()}
    if special:
        return {escape % ord(c) for c in special}
    return {"".join(escape % ord(c) for c in keyword)}


def _percent_forms(keyword: str) -> set[str]:
    return {f for form in _escaped(keyword, "%%%02X") for f in (form, form.lower())}


def _json_forms(keyword: str) -> set[str]:
    lower = _escaped(keyword, "\\u%04x")
    return lower | {f.upper().replace("\\U", "\\u") for f in lower}


def encoded_keywords(keywords: set[str], max_depth: int) -> dict[str, str]:
    """Map each encoded form of the keywords to its encoding (outermost first)."""
    forms: dict[str, str] = {}
    if max_depth < 1:
        return forms
    for keyword in sorted(keywords):
        ascii_kw = keyword.isascii()
        for form in _percent_forms(keyword) if ascii_kw else ():
            forms.setdefault(form, "percent")
        for form in _json_forms(keyword) if ascii_kw else ():
            forms.setdefault(form, "json")
        layer = {keyword}
        for _ in range(max_depth):
            layer = {s for item in layer for s in base64_signatures(item.encode())}
            for sig in layer:
                forms.setdefault(sig, "base64")
    return forms


# bytes.translate table: standard base64 characters -> "A", everything else -> ".". The url-safe
# "-" and "_" are left out: with them every snake_case identifier is a run (7x more runs on
# Python code); a url-safe run is found by its pieces and widened by ``span_around``.
_B64_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_B64_TABLE: Final = bytes(65 if i in _B64_CHARS else 46 for i in range(256))
_RUN_BLOCK: Final = 256 * 1024
MIN_BASE64_RUN: Final = 24  # base64 of the shortest rule match (20-char AWS key id) is 28 chars


def base64_runs(text: str, min_len: int = MIN_BASE64_RUN) -> list[tuple[int, int]]:
    """(start, end) of every run of base64 characters at least ``min_len`` long."""
    runs: list[tuple[int, int]] = []
    needle = b"A" * min_len
    pos = 0
    while pos < len(text):
        # Blocks of ~256 KB cut at newlines (never inside a run) stay in cache and avoid
        # mapping fresh pages for a 40 MB buffer on every call.
        cut = text.find("\n", pos + _RUN_BLOCK)
        cut = len(text) if cut < 0 else cut
        # latin-1 with "replace" keeps one byte per character, so byte offsets are str offsets.
        marks = text[pos:cut].encode("latin-1", "replace").translate(_B64_TABLE)
        start = marks.find(needle)
        while start >= 0:
            end = marks.find(b".", start + min_len)
            end = len(marks) if end < 0 else end
            runs.append((pos + start, pos + end))
            start = marks.find(needle, end)
        pos = cut
    return runs


def span_around(
    text: str, start: int, end: int, encoding: str, limits: DecodeLimits
) -> tuple[int, int] | None:
    """The encoded span of ``encoding`` around ``text[start:end]``; None when over the limit."""
    span = run_extent(text, start, end, encoding)
    if span is None or span[1] - span[0] > limits.max_span(encoding):
        return None
    return span


def run_extent(
    text: str, start: int, end: int, encoding: str, floor: int = 0
) -> tuple[int, int] | None:
    """The whole run of ``encoding`` characters around ``text[start:end]``, not left of ``floor``.

    Unbounded on purpose: the caller decodes a long run in chunks (``chunks``) instead of
    skipping it, and remembers where the run ends so no later trigger inside it looks again;
    ``floor`` (the end of the previous run) keeps every character's leftward scan to once.
    """
    pattern = _SPAN[encoding]
    right = pattern.match(text, end)
    span_start = _left_edge(text, start, pattern, max(0, floor))
    if right is None or span_start is None:
        return None
    span_end = right.end()
    if encoding == "base64":
        pad = _B64_PAD.match(text, span_end)
        span_end = pad.end() if pad else span_end
    return span_start, span_end


def _left_edge(text: str, start: int, pattern: re.Pattern[str], floor: int) -> int | None:
    """Where the run of ``pattern`` characters ending at ``start`` begins (not before ``floor``)."""
    window = 4096
    while True:  # doubling windows: a short run costs a short scan, a long one linear total
        lo = max(floor, start - window)
        left = pattern.match(text[lo:start][::-1])
        if left is None:
            return None
        if left.end() < start - lo or lo == floor:
            return start - left.end()
        window *= 2


# Consecutive chunks of a long run overlap by more than the longest encoded secret (a 270-char
# match is at most 6 * 270 = 1620 escaped characters), so every secret lies whole in one chunk.
CHUNK_OVERLAP: Final = 2048


def chunk_size(encoding: str, limits: DecodeLimits) -> int:
    """Encoded characters per chunk: their decoding never exceeds ``limits.max_bytes``."""
    if encoding == "base64":
        return max(8, limits.max_bytes * 4 // 3 // 4 * 4)
    return max(8, limits.max_bytes)


def chunks(
    text: str, span: tuple[int, int], encoding: str, limits: DecodeLimits
) -> list[tuple[int, int]]:
    """``span`` cut into overlapping pieces whose decodings fit the limit (one piece if short)."""
    a, b = span
    size = chunk_size(encoding, limits)
    overlap = min(CHUNK_OVERLAP, size // 2)
    if b - a <= size:
        return [span]
    out: list[tuple[int, int]] = []
    lo = a
    while True:
        hi = min(b, lo + size)
        out.append((lo, hi))
        if hi >= b:
            return out
        lo = max(lo + 1, _escape_start(text, hi - overlap, encoding, a))


def _escape_start(text: str, pos: int, encoding: str, floor: int) -> int:
    """``pos`` moved back so that it does not fall inside a ``%XX`` or ``\\uXXXX`` escape."""
    if encoding == "base64":
        return pos
    mark, width = ("%", 3) if encoding == "percent" else ("\\", 6)
    back = text.rfind(mark, max(floor, pos - width + 1), pos + 1)
    return back if back >= 0 else pos


def decode(span: str, encoding: str, limits: DecodeLimits) -> str | None:
    """Decode one span; None when it is not valid ``encoding`` or decodes beyond the limit."""
    if len(span) > limits.max_span(encoding):
        return None
    if encoding == "base64":
        return decode_base64(span, limits)
    if encoding == "percent":
        return decode_percent(span, limits)
    if encoding == "json":
        return decode_json_escapes(span, limits)
    return None


def decode_base64(span: str, limits: DecodeLimits) -> str | None:
    """Decode a base64 run (standard or url-safe, any padding); bytes map 1:1 to latin-1 chars.

    The run may start mid-block when something base64-like precedes the value, so all four
    start offsets are decoded and joined: a key sits whole in the one that is aligned.
    """
    core = span.rstrip("=").replace("-", "+").replace("_", "/")
    parts = []
    for offset in range(min(4, len(core))):
        chunk = core[offset:]
        rem = len(chunk) % 4  # keep the last partial block: 2 or 3 chars still carry bytes
        chunk = chunk[:-1] if rem == 1 else chunk + "=" * ((4 - rem) % 4)
        try:
            parts.append(base64.b64decode(chunk, validate=True).decode("latin-1"))
        except (binascii.Error, ValueError):
            continue
    decoded = "\n".join(parts)
    if not decoded or len(decoded) > 4 * limits.max_bytes:
        return None
    return decoded


def decode_percent(span: str, limits: DecodeLimits) -> str | None:
    """Percent-decode a URL span (``+`` kept: keys never contain spaces)."""
    if "%" not in span:
        return None
    decoded = unquote(span, encoding="utf-8", errors="replace")
    return decoded if len(decoded) <= limits.max_bytes else None


def decode_json_escapes(span: str, limits: DecodeLimits) -> str | None:
    """Resolve JSON string escapes (``\\u005f``, ``\\/``…) in a span."""
    if "\\" not in span:
        return None

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        return chr(int(esc[1:], 16)) if esc[0] == "u" else _JSON_SIMPLE[esc]

    decoded = _JSON_ESCAPE.sub(one, span)
    return decoded if len(decoded) <= limits.max_bytes else None

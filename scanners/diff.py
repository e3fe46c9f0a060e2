"""Unified-diff parsing: the ADDED lines of a diff, with their paths and new-file line numbers.

Handles git diffs (several files, ``+++ b/path``, ``/dev/null``, renames, binary markers,
``\\ No newline at end of file``, quoted paths, CRLF), plain ``diff -u`` output and GitHub
compare-API per-file ``patch`` strings (hunks without file headers). Hunk counts decide where a
hunk ends, so an added line that looks like a header (``+++ x``) is still an added line.
Garbage yields nothing; only a non-string input raises ``InputError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final, NamedTuple

from core.errors import InputError

_HUNK: Final = re.compile(r"@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_GIT_HEADER: Final = re.compile(r'diff --git (?:"?a/.*"?) "?b/(.*?)"?$')
_FILE_SPLIT: Final = "\ndiff --git "
MAX_LINE: Final = 2**31 - 1


class AddedLine(NamedTuple):
    """One added line: its file (None when unknown), 1-based new-file line number and text."""

    path: str | None
    line: int
    text: str


def _require_str(value: object) -> str:
    if not isinstance(value, str):
        raise InputError(f"diff must be text, not {type(value).__name__}", reason="bad_diff")
    return value


def split_files(diff: str) -> list[str]:
    """Split a git diff into per-file chunks (C-speed; a hunk line never starts with 'diff')."""
    chunks = _require_str(diff).split(_FILE_SPLIT)
    return [chunks[0], *("diff --git " + c for c in chunks[1:])]


def _clean_path(raw: str) -> str | None:
    """``b/src/x.py\\t2024-01-01`` -> ``src/x.py``; ``/dev/null`` -> None; unquotes C quoting."""
    path = raw.split("\t", 1)[0].rstrip("\r")
    if path.startswith('"') and path.endswith('"') and len(path) >= 2:
        path = _unquote_c(path[1:-1])
    if path == "/dev/null" or not path:
        return None
    if path[:2] in ("a/", "b/"):
        path = path[2:]
    return path or None


def _unquote_c(quoted: str) -> str:
    """Undo git's C-style path quoting (octal bytes, \\t, \\", \\\\)."""
    try:
        raw = quoted.encode("latin-1", "backslashreplace").decode("unicode_escape")
        return raw.encode("latin-1").decode("utf-8", "replace")
    except (UnicodeError, ValueError):
        return quoted


def _hunk_counts(line: str) -> tuple[int, int, int] | None:
    """(new_start, old_count, new_count) from a hunk header line, None when it is not one."""
    m = _HUNK.match(line)
    if m is None:
        return None
    old_count = int(m.group(2)) if m.group(2) is not None else 1
    new_count = int(m.group(4)) if m.group(4) is not None else 1
    # Numbers beyond any real file are clamped: JSON (64-bit) and SQL (32-bit) columns must hold
    # every line number we report, and the hunk's lines are still scanned.
    return min(int(m.group(3)), MAX_LINE), min(old_count, MAX_LINE), min(new_count, MAX_LINE)


def _iter_hunk_lines(lines: list[str], path: str | None, headers: bool) -> Iterator[AddedLine]:
    """The added lines of ``lines``; file headers are honoured only when ``headers``."""
    old_left = new_left = 0
    new_line = 0
    for raw in lines:
        if old_left > 0 or new_left > 0:
            tag = raw[:1]
            if tag == "+":
                yield AddedLine(path, new_line, raw[1:].removesuffix("\r"))
                new_line += 1
                new_left -= 1
                continue
            if tag in (" ", ""):
                new_line += 1
                old_left -= 1
                new_left -= 1
                continue
            if tag == "-":
                old_left -= 1
                continue
            if tag == "\\":
                continue
            old_left = new_left = 0  # malformed hunk: fall through to header handling
        if raw.startswith("@@ "):
            counts = _hunk_counts(raw)
            if counts is not None and counts[1] + counts[2] <= 10_000_000:
                new_line, old_left, new_left = counts
        elif headers:
            path = _header_path(raw, path)


def _header_path(raw: str, path: str | None) -> str | None:
    """Update the current path from a file header line (or keep it)."""
    if raw.startswith("diff --git "):
        m = _GIT_HEADER.match(raw.rstrip("\r"))
        return _clean_path("b/" + m.group(1)) if m else None
    if raw.startswith("+++ "):
        return _clean_path(raw[4:])
    if raw.startswith("rename to ") or raw.startswith("copy to "):
        return _clean_path(raw.split(" to ", 1)[1]) or path
    return path


def iter_added_lines(diff: str) -> Iterator[AddedLine]:
    """Every added line of a unified diff (git or plain), in order."""
    yield from _iter_hunk_lines(_require_str(diff).split("\n"), None, headers=True)


def iter_patch_lines(path: str, patch: str) -> Iterator[AddedLine]:
    """Every added line of a GitHub compare-API ``patch`` (hunks only) for file ``path``."""
    _require_str(path)
    yield from _iter_hunk_lines(_require_str(patch).split("\n"), path, headers=False)


def header_path(header: str) -> str | None:
    """The new-file path named by the header lines of one file's diff (None when unnamed)."""
    path: str | None = None
    for raw in header.split("\n"):
        path = _header_path(raw, path)
    return path


def file_starts(text: str) -> list[int]:
    """Offsets of the newline before each ``diff --git`` line (and 0): one file's diff each."""
    starts, pos = [0], text.find(_FILE_SPLIT, 1)
    while pos >= 0:
        starts.append(pos)
        pos = text.find(_FILE_SPLIT, pos + 1)
    return starts


def file_around(text: str, pos: int) -> tuple[int, int]:
    """(start, end) of the file's diff holding offset ``pos``, delimited as ``file_starts`` does
    (0 or the newline before a ``diff --git`` line), found by searching out from ``pos``."""
    n = len(_FILE_SPLIT)
    lo = text.rfind(_FILE_SPLIT, 1, pos - 1 + n) if pos > 1 else -1
    hi = text.find(_FILE_SPLIT, max(pos, 1))
    return max(lo, 0), len(text) if hi < 0 else hi


class AddedLocator:
    """Maps increasing offsets of one file's diff to (new-file line, column) of added lines.

    ``text[lo:]`` is the file's diff or patch (``lo`` is 0 or a newline's offset). Counting with
    C-speed ``str.count`` from the enclosing hunk header replaces a Python loop over every line,
    and each call resumes where the previous one stopped, so the total work is linear even for
    many hits on one 10 MB line. The counts also bound each hunk as the parser does.
    """

    def __init__(self, text: str, lo: int = 0) -> None:
        """Start before the first line of ``text[lo:]``."""
        self._text, self._pos, self._line_start = text, lo, lo if lo else -1
        self._counts: tuple[int, int, int] | None = None
        self._plus = self._minus = self._other = 0  # "\\" lines count in _other, then removed
        self._back = 0
        self._counted_to = lo
        if text.startswith("@@ ", lo):
            self._enter_hunk(lo - 1)

    def _enter_hunk(self, header: int) -> None:
        end = self._text.find("\n", header + 1)
        end = len(self._text) if end < 0 else end
        self._counts = _hunk_counts(self._text[header + 1 : end])
        self._plus = self._minus = self._other = self._back = 0
        self._counted_to = end

    def locate(self, pos: int) -> tuple[int, int] | None:
        """(line, column) when ``pos`` (not below the previous call's) is in an added line."""
        text = self._text
        newline = text.rfind("\n", self._pos, pos)
        line_start = newline if newline >= 0 else self._line_start
        # (guarded: a negative end would count from the end of the text)
        header = text.rfind("\n@@ ", self._pos, line_start) if line_start > self._pos else -1
        if header >= 0:
            self._enter_hunk(header)
        self._pos, self._line_start = pos, line_start
        if self._counts is None or not text.startswith("+", line_start + 1):
            return None
        if line_start > self._counted_to:
            a, b = self._counted_to, line_start
            plus, minus = text.count("\n+", a, b), text.count("\n-", a, b)
            self._back += text.count("\n\\", a, b)
            self._other += text.count("\n", a, b) - plus - minus
            self._plus, self._minus, self._counted_to = self._plus + plus, self._minus + minus, b
        new_start, old_count, new_count = self._counts
        context = self._other - self._back
        if self._plus + context >= new_count or self._minus + context > old_count:
            return None
        return new_start + self._plus + context, pos - line_start - 1

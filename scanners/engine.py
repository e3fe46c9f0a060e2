"""The leak-scanning engine: one prefilter pass for every rule, precise regexes only around hits.

Pure: no I/O besides reading the rules file. The prefilter is an Aho-Corasick automaton over every
rule keyword plus the percent/JSON-escaped forms of their punctuation; base64 signatures are looked
for only inside base64 runs (see ``core.decoders``). On 43 MB of Python the automaton ran at
106 MB/s against 65 MB/s for one combined regex of the same 33 keywords, and 25 against 2.4 MB/s
with 345 keywords (benchmarks/SCANNER.md). A diff is scanned raw in one pass; only hits are mapped
back to added lines, so a file without a hit costs no Python per line.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from core import decoders
from core.decoders import DecodeLimits
from core.errors import InputError
from core.keyformat import environment_of, hash_key, redact_key
from scanners.diff import (
    AddedLine,
    AddedLocator,
    file_around,
    header_path,
    iter_added_lines,
)
from scanners.prefilter import Prefilter, make_prefilter
from scanners.rules import DEFAULT_RULES_PATH, Rule, RuleSet, load_rules

_LOOKBACK: Final = 64  # a rule's match may begin this far before its keyword
_LOOKAHEAD: Final = 1024  # longer than any rule's longest match (the longest is ~270 chars)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A possible leaked secret; repr/str/to_dict never contain the secret."""

    rule_id: str
    kind: str  # "platform" | "third_party"
    key_hash: str  # sha256 hex of the candidate (keyformat.hash_key)
    redacted: str
    path: str | None
    line: int | None
    column: int | None
    checksum_ok: bool | None  # None when the rule has no checksum
    environment: str | None  # "live" | "test" for platform keys
    encoding: str  # "plain" | "base64" | "percent" | "json"
    secret: str = field(repr=False, compare=False)  # in memory only, never serialised
    location: str = "content"  # "content" | "path" | "commit_message"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict without the secret."""
        return {
            "rule_id": self.rule_id,
            "kind": self.kind,
            "key_hash": self.key_hash,
            "redacted": self.redacted,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "checksum_ok": self.checksum_ok,
            "environment": self.environment,
            "encoding": self.encoding,
            "location": self.location,
        }


@dataclass(frozen=True, slots=True)
class _Hit:
    """A secret found at an offset of the scanned text."""

    pos: int
    rule: Rule
    secret: str
    encoding: str


class Engine:
    """Finds candidate secrets in text, diffs and patches with one set of rules."""

    def __init__(
        self, ruleset: RuleSet, limits: DecodeLimits | None = None, prefilter: str = "auto"
    ) -> None:
        """Build the prefilter over every rule keyword and its encoded forms (``prefilter``:
        ``auto`` takes Hyperscan when it is installed, else Aho-Corasick)."""
        self.ruleset = ruleset
        self.limits = limits or DecodeLimits()
        table, signatures = _keyword_tables(ruleset.rules, self.limits)
        self._prefilter: Prefilter[_Entries]
        self._prefilter, self._b64_prefilter = make_prefilter(table, signatures, prefilter)
        self.prefilter = type(self._prefilter).__name__

    @classmethod
    def default(cls, limits: DecodeLimits | None = None, prefilter: str = "auto") -> Engine:
        """An engine with the packaged ``scanners/rules.toml``."""
        return cls(load_rules(DEFAULT_RULES_PATH), limits, prefilter)

    @classmethod
    def from_file(cls, path: Path, limits: DecodeLimits | None = None) -> Engine:
        """An engine with the rules of ``path`` (``ConfigError`` when invalid)."""
        return cls(load_rules(path), limits)

    def safe_path(self, path: str | None) -> str | None:
        """``path`` with every secret in it redacted: a key in a file name is never copied whole."""
        if path is None:
            return None
        hits = self._find(_require_str(path), 0)
        for hit in hits:
            if hit.encoding == "plain" and hit.secret in path:
                path = path.replace(hit.secret, _redacted(hit.rule, hit.secret))
        if any(h.encoding != "plain" for h in hits):  # an encoded secret: drop its segment
            path = "/".join(
                seg if not self._find(seg, 0) else "[redacted]" for seg in path.split("/")
            )
        return path

    def scan_path(self, path: str) -> list[Candidate]:
        """Candidates in a file path (or any name): reported with the path redacted."""
        shown = self.safe_path(path)
        out: dict[tuple[str, str | None, int | None], Candidate] = {}
        for hit in self._find(_require_str(path), 0):
            _add(out, _candidate(hit, shown, None, None, "path"))
        return list(out.values())

    def scan_text(
        self, text: str, path: str | None = None, location: str = "content"
    ) -> list[Candidate]:
        """Candidates in a whole file's text (or a commit message), with 1-based line, column."""
        text = _require_str(text)
        path = self.safe_path(path)
        hits = sorted(self._find(text, 0), key=lambda h: h.pos)
        out: dict[tuple[str, str | None, int | None], Candidate] = {}
        line, line_pos, line_start = 1, 0, -1
        for hit in hits:  # sorted: resume each search where the last one stopped (linear)
            line += text.count("\n", line_pos, hit.pos)
            newline = text.rfind("\n", line_pos, hit.pos)
            line_start = newline if newline >= 0 else line_start
            line_pos = hit.pos
            column = hit.pos - line_start
            _add(out, _candidate(hit, path, line, column, location))
        return list(out.values())

    def scan_diff(self, diff: str) -> list[Candidate]:
        """Candidates in the added lines of a unified diff (git or plain).

        One prefilter pass over the whole diff; only the files with a hit are looked at again.
        """
        text = _require_str(diff)  # not "\n" + diff: a copy of a 40 MB UCS-4 string costs 0.3 s
        out: dict[tuple[str, str | None, int | None], Candidate] = {}
        hits = sorted(self._find(text, 0), key=lambda h: h.pos)
        if not hits:
            return []
        done: dict[int, str | None] = {}
        locators: dict[int, AddedLocator] = {}
        slow: set[int] = set()
        lo = hi = -1
        for hit in hits:
            if not lo < hit.pos < hi:  # only the files with a hit are ever delimited
                lo, hi = file_around(text, hit.pos)
            i = lo
            if i not in done:
                first = lo if text.startswith("@@ ", lo) else text.find("\n@@ ", lo, hi)
                header = text[lo : max(lo, first)] if first >= 0 else text[lo:hi]
                done[i] = self.safe_path(header_path(header))
                for cand in self._header_candidates(header, done[i]):
                    _add(out, cand)
                locators[i] = AddedLocator(text, lo)
                if text.count("\n+++ ", lo, hi) > 1:  # several files, no "diff --git" lines
                    slow.add(i)
                    self._scan_added(iter_added_lines(text[lo:hi]), out)
            if i not in slow and (where := locators[i].locate(hit.pos)) is not None:
                _add(out, _candidate(hit, done[i], where[0], where[1]))
        return list(out.values())

    def scan_patch(self, path: str, patch: str) -> list[Candidate]:
        """Candidates in the added lines of one GitHub compare-API ``patch`` for ``path``."""
        out: dict[tuple[str, str | None, int | None], Candidate] = {}
        if not isinstance(path, str):
            raise InputError("patch path must be text", reason="bad_input")
        self._scan_hunks(_require_str(patch), self.safe_path(path), out)
        return list(out.values())

    def _header_candidates(self, header: str, shown: str | None) -> list[Candidate]:
        """Secrets in a file's diff header (old and new paths): reported as path leaks."""
        return [_candidate(hit, shown, None, None, "path") for hit in self._find(header, 0)]

    def _scan_hunks(
        self,
        hunks: str,
        path: str | None,
        out: dict[tuple[str, str | None, int | None], Candidate],
    ) -> None:
        """Scan raw hunk text in one pass; keep hits that lie in added lines."""
        locator = AddedLocator(hunks)
        for hit in sorted(self._find(hunks, 0), key=lambda h: h.pos):
            where = locator.locate(hit.pos)
            if where is not None:
                _add(out, _candidate(hit, path, where[0], where[1]))

    def _base64_spans(self, text: str) -> list[tuple[int, int]]:
        """Base64 runs of ``text`` that contain a keyword signature (one automaton pass)."""
        runs = decoders.base64_runs(text) if self._b64_prefilter is not None else []
        if not runs or self._b64_prefilter is None:
            return []
        joined = "\n".join(text[a:b] for a, b in runs)
        starts = list(itertools.accumulate((b - a + 1 for a, b in runs[:-1]), initial=0))
        hit_runs = sorted(
            {bisect.bisect_right(starts, end) - 1 for end, _ in self._b64_prefilter.hits(joined)}
        )
        spans: list[tuple[int, int]] = []
        done = 0
        for i in hit_runs:  # in order, each widened once: a run inside the last span is skipped
            if runs[i][0] < done:
                continue
            span = decoders.run_extent(text, *runs[i], "base64", done)
            if span is not None:
                spans.append(span)
                done = span[1]
        return spans

    def _scan_added(
        self,
        added: Iterable[AddedLine],
        out: dict[tuple[str, str | None, int | None], Candidate],
    ) -> None:
        """Scan added lines grouped by file as one text; offsets map back to lines by bisection."""
        for raw_path, lines in _group_by_path(added):
            path = self.safe_path(raw_path)
            starts, pos = [], 0
            for line in lines:
                starts.append(pos)
                pos += len(line.text) + 1
            text = "\n".join(line.text for line in lines)
            for hit in sorted(self._find(text, 0), key=lambda h: h.pos):
                i = bisect.bisect_right(starts, hit.pos) - 1
                _add(out, _candidate(hit, path, lines[i].line, hit.pos - starts[i] + 1))

    def _find(self, text: str, depth: int) -> list[_Hit]:
        """Every accepted secret in ``text``; encoded spans are decoded while depth allows.

        Linear in ``text`` on any input: a keyword hit costs at most one anchored regex match
        (bounded by the rule's longest match) and none inside a span the rule already matched
        or rejected; an encoded run is found once (later triggers inside it are skipped) and
        decoded once, in overlapping chunks when it is longer than the decode limit.
        """
        hits: list[_Hit] = []
        covered: dict[str, int] = {}  # rule id -> end of the span its last attempt consumed
        decoded_until = {"percent": -1, "json": -1, "base64": -1}
        can_decode = depth < self.limits.max_depth
        for end, entries in self._prefilter.hits(text):
            for keyword, target in entries:
                start = end - len(keyword) + 1
                if isinstance(target, Rule):
                    if start >= covered.get(target.id, -1):
                        hit, covered[target.id] = self._match(text, start, target)
                        if hit is not None:
                            hits.append(hit)
                elif can_decode and start >= decoded_until[target]:
                    floor = max(decoded_until[target], 0)
                    span = decoders.run_extent(text, start, end + 1, target, floor)
                    decoded_until[target] = span[1] if span is not None else end + 1
                    if span is not None and _worth_decoding(span, target):
                        hits.extend(self._decode_run(text, span, target, depth))
        if can_decode and not self._prefilter.includes_base64:
            for span in self._base64_spans(text):
                hits.extend(self._decode_run(text, span, "base64", depth))
        return hits

    def _match(self, text: str, start: int, rule: Rule) -> tuple[_Hit | None, int]:
        """The rule's match around a keyword at ``start``, and where the next attempt may begin."""
        if rule.keyword_at_start:
            m = rule.regex.match(text, start)
        else:  # the match may begin before its keyword: search a bounded window
            lo = max(0, start - _LOOKBACK)
            m = rule.regex.search(text, lo, min(len(text), start + _LOOKAHEAD))
            m = m if m is not None and m.start() <= start < m.end() else None
        if m is None:
            return None, start + 1
        secret = rule.secret_of(m)
        if not rule.accepts(secret):
            return None, m.end()  # a rejected span: no later keyword inside it is tried again
        pos = m.start("secret") if "secret" in m.re.groupindex else m.start()
        return _Hit(pos, rule, secret, "plain"), m.end()

    def _decode_run(
        self, text: str, span: tuple[int, int], encoding: str, depth: int
    ) -> list[_Hit]:
        """Decode a run (chunked when long) and scan it a level deeper."""
        out: list[_Hit] = []
        for chunk in decoders.chunks(text, span, encoding, self.limits):
            out.extend(self._decode(text, chunk, encoding, depth))
        return out

    def _decode(self, text: str, span: tuple[int, int], encoding: str, depth: int) -> list[_Hit]:
        """Decode one span and scan it a level deeper; hits point at the span's start."""
        decoded = decoders.decode(text[span[0] : span[1]], encoding, self.limits)
        if decoded is None:
            return []
        return [
            _Hit(span[0], inner.rule, inner.secret, encoding)
            for inner in self._find(decoded, depth + 1)
        ]


_Entries = list[tuple[str, "Rule | str"]]


def _keyword_tables(
    rules: Iterable[Rule], limits: DecodeLimits
) -> tuple[dict[str, _Entries], dict[str, _Entries]]:
    """Keyword -> [(keyword, Rule | encoding)] for the keywords and their percent/JSON forms,
    and the same for the base64 signatures."""
    table: dict[str, _Entries] = {}
    for rule in rules:
        for keyword in rule.keywords:
            table.setdefault(keyword, []).append((keyword, rule))
    signatures: dict[str, _Entries] = {}
    for form, encoding in decoders.encoded_keywords(set(table), limits.max_depth).items():
        if encoding == "base64":
            signatures[form] = [(form, "base64")]
        elif form not in table:
            table[form] = [(form, encoding)]
    return table, signatures


def _worth_decoding(span: tuple[int, int], encoding: str) -> bool:
    """A base64 signature counts only inside a run long enough to hold a key's encoding."""
    return encoding != "base64" or span[1] - span[0] >= decoders.MIN_BASE64_RUN


def _group_by_path(added: Iterable[AddedLine]) -> Iterator[tuple[str | None, list[AddedLine]]]:
    """Consecutive added lines of the same file, as lists."""
    current: list[AddedLine] = []
    for line in added:
        if current and line.path != current[0].path:
            yield current[0].path, current
            current = []
        current.append(line)
    if current:
        yield current[0].path, current


def _candidate(
    hit: _Hit, path: str | None, line: int | None, column: int | None, location: str = "content"
) -> Candidate:
    """Turn a hit into a Candidate (hash, redacted form, checksum, environment)."""
    rule, secret = hit.rule, hit.secret
    platform = rule.kind == "platform"
    return Candidate(
        rule_id=rule.id,
        kind=rule.kind,
        key_hash=hash_key(secret),
        redacted=_redacted(rule, secret),
        path=path,
        line=line,
        column=column,
        checksum_ok=rule.checksum_ok(secret),
        environment=environment_of(secret) if platform else None,
        encoding=hit.encoding,
        secret=secret,
        location=location,
    )


def _redacted(rule: Rule, secret: str) -> str:
    return redact_key(secret) if rule.kind == "platform" else _redact_third_party(rule, secret)


def _redact_third_party(rule: Rule, secret: str) -> str:
    """The keyword and four more characters, like keyformat.redact_key does for ours."""
    keyword = next((k for k in rule.keywords if secret.startswith(k)), secret[:4])
    return f"{secret[: len(keyword) + 4]}…"


def _add(out: dict[tuple[str, str | None, int | None], Candidate], cand: Candidate) -> None:
    """Keep the first candidate per (key_hash, path, line)."""
    out.setdefault((cand.key_hash, cand.path, cand.line), cand)


def _require_str(text: object) -> str:
    if not isinstance(text, str):
        raise InputError(f"scan input must be text, not {type(text).__name__}", reason="bad_input")
    return text

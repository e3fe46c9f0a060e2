"""Property tests: the diff parser, decoders and engine never raise on arbitrary input.

No max_examples here: a CI profile may raise it (10,000), so each example stays cheap.
"""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import decoders
from core.decoders import DecodeLimits
from core.keyformat import hash_key
from scanners.diff import iter_added_lines, iter_patch_lines
from scanners.engine import Engine

ENGINE = Engine.default()
LIMITS = DecodeLimits(max_bytes=4096)
KEY = "sk_live_Q7hZ2mKpL9vX4cR8tYw3Nb6Fs1Dg5Jk0Ue7AzR5vd2kP9"

DIFF_SEED = (
    "diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1,2 +1,3 @@\n x\n-y\n+z\n+w\n"
    "\\ No newline at end of file\n"
)
# Pieces that look like diff syntax, keys and encodings, so mutations explore interesting inputs.
PIECES = st.sampled_from(
    [
        "\n",
        "\r\n",
        "+",
        "-",
        " ",
        "\\",
        "@@ ",
        " @@",
        "@@ -1,2 +1,3 @@",
        "@@ -0,0 +1 @@",
        "+++ b/x",
        "--- a/x",
        "diff --git a/x b/x",
        "/dev/null",
        "rename to y",
        "%5F",
        "\\u005f",
        "sk_live_",
        "c2tfbGl2ZV",
        "==",
        KEY,
        base64.b64encode(KEY.encode()).decode(),
        "9" * 12,
    ]
)
TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(PIECES, st.text(max_size=8)), max_size=40).map("".join),
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")),
)


def _mutate(seed: str, cuts: list[tuple[int, str]]) -> str:
    for pos, insert in cuts:
        pos %= len(seed) + 1
        seed = seed[:pos] + insert + seed[pos + 1 :]
    return seed


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT)
def test_diff_parser_never_raises(text: str) -> None:
    for line in iter_added_lines(text):
        assert line.line >= 0 and "\n" not in line.text
    for line in iter_patch_lines("p", text):
        assert line.path == "p"


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.one_of(PIECES, st.text(max_size=4))), max_size=8))
def test_mutated_diff_never_raises(cuts: list[tuple[int, str]]) -> None:
    text = _mutate(DIFF_SEED, cuts)
    list(iter_added_lines(text))
    ENGINE.scan_diff(text)


@settings(deadline=None)
@given(TEXT, st.sampled_from(decoders.ENCODINGS), st.integers(0, 300), st.integers(0, 20))
def test_decoders_never_raise(text: str, encoding: str, start: int, width: int) -> None:
    start = min(start, len(text))
    end = min(len(text), start + width)
    span = decoders.span_around(text, start, end, encoding, LIMITS)
    if span is not None:
        assert 0 <= span[0] <= start and end <= span[1] <= len(text)
    decoded = decoders.decode(text, encoding, LIMITS)
    assert decoded is None or len(decoded) <= 4 * LIMITS.max_bytes


@settings(deadline=None)
@given(TEXT, TEXT)
def test_engine_never_raises_and_never_leaks(before: str, after: str) -> None:
    for cand in ENGINE.scan_text(before + after, path="x"):
        assert cand.secret not in repr(cand)
        assert cand.key_hash == hash_key(cand.secret)


@settings(deadline=None)
@given(st.text(alphabet="ab=+/%\\u_ -", max_size=50), st.integers(1, 30))
def test_huge_lines_finish(unit: str, repeat: int) -> None:
    line = (unit or "a") * (2000 * repeat // max(1, len(unit)))
    diff = f"@@ -0,0 +1,2 @@\n+{line}{KEY}\n+{line}\n"
    found = ENGINE.scan_patch("big", diff)
    assert all(c.line in (1, 2) for c in found)


@settings(deadline=None)
@given(st.text(max_size=40), st.text(max_size=40), st.sampled_from(["plain", "b64", "pct"]))
def test_key_found_between_separators(left: str, right: str, form: str) -> None:
    hidden = {
        "plain": KEY,
        "b64": base64.b64encode(KEY.encode()).decode(),
        "pct": KEY.replace("_", "%5F"),
    }[form]
    text = f"{left}\n{hidden}\n{right}"
    hashes = {c.key_hash for c in ENGINE.scan_text(text)}
    assert hash_key(KEY) in hashes


BODIES = ["Q7hZ2mKpL9vX4cR8tYw3", "n6Fs1Dg5Jk0Ue7AzR5vd"]
# Line texts that look like diff syntax; the kind letter picks one, so an example costs few draws.
FILLERS = {" ": "++ b/f", "-": "@@ -1 +1 @@", "+": "+ \\", "k": "- x", "a": "", "b": "\\ z"}


@st.composite
def well_formed_diffs(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A git diff of 1-2 files with consistent hunk counts, and the keys in its added lines.

    Hunks are drawn as one string: letters are line kinds (" -+" and "k" = added line with a
    key; "a"/"b" = added/context with other fillers), "|" starts a new hunk, "/" a new file.
    """
    plan = draw(st.text(alphabet=" -+kab|/", min_size=1, max_size=16))
    parts, added_keys = [], []
    for f, file_plan in enumerate(plan.split("/")):
        parts.append(f"diff --git a/f{f} b/f{f}\n--- a/f{f}\n+++ b/f{f}\n")
        old_line = new_line = 1
        for hunk in file_plan.split("|"):
            old_n = sum(k in " -b" for k in hunk)
            new_n = sum(k in " +kab" for k in hunk)
            parts.append(f"@@ -{old_line},{old_n} +{new_line},{new_n} @@\n")
            for i, kind in enumerate(hunk):
                filler = FILLERS[kind]
                if kind == "k":
                    key = "sk_live_" + BODIES[i % 2]
                    added_keys.append(key)
                    parts.append(f"+{filler} {key}\n")
                else:
                    tag = {"a": "+", "b": " "}.get(kind, kind)
                    parts.append(f"{tag}{filler}\n")
            old_line += old_n + 2
            new_line += new_n + 2
    return "".join(parts), added_keys


@settings(deadline=None)
@given(well_formed_diffs())
def test_fast_diff_path_agrees_with_parser(case: tuple[str, list[str]]) -> None:
    diff, keys = case
    fast = {(c.path, c.line, c.column, c.key_hash) for c in ENGINE.scan_diff(diff)}
    slow = set()  # where the line parser says the planted keys are (LINE cannot make keys)
    for line in iter_added_lines(diff):
        for key in {"sk_live_" + body for body in BODIES}:
            if (col := line.text.find(key)) >= 0:
                slow.add((line.path, line.line, col + 1, hash_key(key)))
    assert fast == slow
    assert {h for *_, h in fast} == {hash_key(k) for k in keys}


AHO_CORASICK = Engine.default(prefilter="aho-corasick")
FAST = Engine.default()  # Hyperscan where installed (the default), else the same automaton


@settings(deadline=None)
@given(TEXT, TEXT, st.sampled_from(["plain", "b64", "pct", "json", "none"]))
def test_prefilters_agree(before: str, after: str, form: str) -> None:
    forms = {"plain": KEY, "b64": base64.b64encode(KEY.encode()).decode(), "none": "",
             "pct": KEY.replace("_", "%5F"), "json": KEY.replace("_", "\\u005f")}  # fmt: skip
    hidden = forms[form]
    text = f"{before} {hidden} {after}"
    for scan in (lambda e: e.scan_text(text, "p"), lambda e: e.scan_diff(text)):
        fast = {(c.key_hash, c.line) for c in scan(FAST)}
        assert fast == {(c.key_hash, c.line) for c in scan(AHO_CORASICK)}

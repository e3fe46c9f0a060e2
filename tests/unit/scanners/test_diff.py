"""Unified-diff parsing: added lines only, with paths and new-file line numbers."""

from __future__ import annotations

import pytest

from core.errors import InputError
from core.keyformat import generate_key, hash_key
from scanners.diff import AddedLine, iter_added_lines, iter_patch_lines, split_files
from scanners.engine import Engine

GIT_DIFF = """\
diff --git a/src/app.py b/src/app.py
index 83db48f..bf269f4 100644
--- a/src/app.py
+++ b/src/app.py
@@ -1,4 +1,5 @@
 import os
-KEY = "old"
+KEY = "new"
+OTHER = 2
<SPACE>
 def main():
@@ -10,2 +11,3 @@ def main():
     pass
+    return 1
 # end
\\ No newline at end of file
diff --git a/docs/old name.md b/docs/new name.md
similarity index 95%
rename from docs/old name.md
rename to docs/new name.md
index 1111111..2222222 100644
--- a/docs/old name.md
+++ b/docs/new name.md
@@ -3 +3 @@
-was
+is
diff --git a/logo.png b/logo.png
new file mode 100644
index 0000000..3333333
Binary files /dev/null and b/logo.png differ
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 4444444..0000000
--- a/gone.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-line one
-line two
diff --git a/new.env b/new.env
new file mode 100644
index 0000000..5555555
--- /dev/null
+++ b/new.env
@@ -0,0 +1,3 @@
+A=1
+++ B=2
+--- C=3
""".replace("<SPACE>", " ")  # a context line holding one space

EXPECTED = [
    AddedLine("src/app.py", 2, 'KEY = "new"'),
    AddedLine("src/app.py", 3, "OTHER = 2"),
    AddedLine("src/app.py", 12, "    return 1"),
    AddedLine("docs/new name.md", 3, "is"),
    AddedLine("new.env", 1, "A=1"),
    AddedLine("new.env", 2, "++ B=2"),
    AddedLine("new.env", 3, "--- C=3"),
]


def test_git_diff_added_lines() -> None:
    assert list(iter_added_lines(GIT_DIFF)) == EXPECTED


def test_split_files_gives_same_lines() -> None:
    chunks = split_files(GIT_DIFF)
    assert len(chunks) == 5
    assert [line for c in chunks for line in iter_added_lines(c)] == EXPECTED


def test_crlf_diff() -> None:
    crlf = GIT_DIFF.replace("\n", "\r\n")
    assert list(iter_added_lines(crlf)) == EXPECTED


@pytest.mark.parametrize(
    ("diff", "expected"),
    [
        (
            "--- a.txt\t2024-01-01 00:00:00\n+++ b.txt\t2024-01-02 00:00:00\n"
            "@@ -1 +1,2 @@\n x\n+y\n",
            [AddedLine("b.txt", 2, "y")],
        ),
        (
            'diff --git "a/caf\\303\\251" "b/caf\\303\\251"\n--- "a/caf\\303\\251"\n'
            '+++ "b/caf\\303\\251"\n@@ -0,0 +1 @@\n+x\n',
            [AddedLine("café", 1, "x")],
        ),
        ("@@ -1,2 +1,2 @@\n-a\n+b\n c\n+outside hunk\n", [AddedLine(None, 1, "b")]),
        (
            "+++ b/x\n@@ -1 +1 @@\n-a\n+b\n@@ -9,0 +10 @@\n+c\n",
            [AddedLine("x", 1, "b"), AddedLine("x", 10, "c")],
        ),
        ("@@ -1,3 +1,3 @@\n a\n\n+c\n", [AddedLine(None, 3, "c")]),
        ("@@ -1 +1 @@\ngarbage\n+x\n", []),
        ("", []),
        ("@@ -a,b +c,d @@\n+x\n", []),
        ("@@@ -1,1 -1,1 +1,2 @@@\n++x\n", []),
    ],
)
def test_edge_cases(diff: str, expected: list[AddedLine]) -> None:
    assert list(iter_added_lines(diff)) == expected


def test_github_patch() -> None:
    patch = "@@ -1,3 +1,4 @@\n a\n-b\n+B\n+C\n c\n@@ -20,0 +21,1 @@\n+Z"
    assert list(iter_patch_lines("conf/app.yml", patch)) == [
        AddedLine("conf/app.yml", 2, "B"),
        AddedLine("conf/app.yml", 3, "C"),
        AddedLine("conf/app.yml", 21, "Z"),
    ]


def test_patch_ignores_header_looking_lines() -> None:
    patch = "+++ b/other\n@@ -0,0 +1,1 @@\n+x"
    assert list(iter_patch_lines("p", patch)) == [AddedLine("p", 1, "x")]


def test_non_text_raises_input_error() -> None:
    with pytest.raises(InputError) as info:
        list(iter_added_lines(b"diff"))  # type: ignore[arg-type]
    assert info.value.reason == "bad_diff"
    with pytest.raises(InputError):
        Engine.default().scan_diff(None)  # type: ignore[arg-type]


def test_engine_scans_only_added_lines(engine: Engine) -> None:
    added, removed, context = (generate_key().secret for _ in range(3))
    diff = (
        "diff --git a/.env b/.env\n--- a/.env\n+++ b/.env\n@@ -1,3 +1,3 @@\n"
        f" CONTEXT={context}\n-OLD={removed}\n+NEW={added}\n"
    )
    (cand,) = engine.scan_diff(diff)
    assert (cand.key_hash, cand.path, cand.line, cand.column) == (hash_key(added), ".env", 2, 5)


def test_engine_scan_diff_many_files(engine: Engine) -> None:
    keys = [generate_key().secret for _ in range(3)]
    diff = "".join(
        f"diff --git a/f{i} b/f{i}\n--- /dev/null\n+++ b/f{i}\n@@ -0,0 +1,{i + 2} @@\n"
        + "+pad\n" * (i + 1)
        + f"+k: '{k}'\n"
        for i, k in enumerate(keys)
    )
    found = engine.scan_diff(diff)
    assert [(c.path, c.line, c.column) for c in found] == [("f0", 2, 5), ("f1", 3, 5), ("f2", 4, 5)]
    assert [c.key_hash for c in found] == [hash_key(k) for k in keys]


def test_engine_scan_patch(engine: Engine) -> None:
    key = generate_key("test").secret
    found = engine.scan_patch("a.js", f"@@ -5,1 +5,2 @@\n x\n+const k = '{key}';")
    assert [(c.path, c.line, c.column, c.environment) for c in found] == [("a.js", 6, 12, "test")]
    assert engine.scan_patch("a.js", f"@@ -5,2 +5,1 @@\n x\n-const k = '{key}';") == []


def test_engine_plain_multi_file_diff_without_git_headers(engine: Engine) -> None:
    keys = [generate_key().secret for _ in range(2)]
    diff = (
        f"--- a/one\n+++ b/one\n@@ -1 +1,2 @@\n x\n+A={keys[0]}\n"
        f"--- a/two\n+++ b/two\n@@ -4,0 +5 @@\n+B={keys[1]}\n"
    )
    found = engine.scan_diff(diff)
    assert [(c.path, c.line, c.column) for c in found] == [("one", 2, 3), ("two", 5, 3)]


def test_engine_diff_starting_with_a_hunk(engine: Engine) -> None:
    key = generate_key().secret
    found = engine.scan_diff(f"@@ -1,0 +1,2 @@\n++++ b/{key}\n+x\n")
    assert [(c.path, c.line, c.column) for c in found] == [(None, 1, 7)]


def test_engine_reports_keys_in_file_headers_as_path_leaks(engine: Engine) -> None:
    key = generate_key().secret
    diff = f"diff --git a/{key} b/{key}\n--- a/{key}\n+++ b/{key}\n@@ -1 +1 @@\n-a\n+b\n"
    (cand,) = engine.scan_diff(diff)
    assert (cand.location, cand.line, cand.key_hash) == ("path", None, hash_key(key))
    assert cand.path == cand.redacted and key not in repr(cand.to_dict())


def test_many_keys_on_one_long_added_line(engine: Engine) -> None:
    keys = [generate_key().secret for _ in range(300)]
    line = "".join(f"k{i}='{k}';" + "x=1;" * 200 for i, k in enumerate(keys))
    diff = f"diff --git a/m.js b/m.js\n--- a/m.js\n+++ b/m.js\n@@ -1 +1,2 @@\n-a\n+b\n+{line}\n"
    patch = f"@@ -0,0 +1,2 @@\n+a\n+{line}"
    for found in (engine.scan_diff(diff), engine.scan_patch("m.js", patch), engine.scan_text(line)):
        assert [c.key_hash for c in found] == [hash_key(k) for k in keys]
        for cand in found:
            assert line[cand.column - 1 :].startswith(cand.secret)
            assert cand.line == (1 if cand.path is None else 2)

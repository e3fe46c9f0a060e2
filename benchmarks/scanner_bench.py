"""Leak-scanner benchmark: keywatch's engine against detect-secrets on the same diff corpus.

    /work/venv/bin/python benchmarks/scanner_bench.py [--mb 40] [--keys 200] [--no-detect-secrets]

Builds a corpus of REAL code (``.py`` files of the venv's site-packages, sorted by path, taken
until ``--mb`` megabytes) as git diffs of added files, plants ``--keys`` keys in varied contexts
(current checksum format and older url-safe base64 / hex bodies; plain, base64, percent and JSON
escaped; .env, JSON, YAML, code, headers, curl, URLs, 100k-char minified lines, CRLF), then in one
run times both scanners and prints a table. Planted keys come from a seeded PRNG: never issued.
detect-secrets (``pip install keywatch[bench]``) runs in-process via ``SecretsCollection.scan_diff``
with its default plugins and filters; a planted key counts as found by it when it flags a secret
on the planted line that overlaps the planted text (generous: keywatch must match the key's hash).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import re
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import ahocorasick

from core import decoders
from core.keyformat import BASE62, KNOWN_PREFIXES, checksum, hash_key
from scanners.diff import iter_added_lines
from scanners.engine import Engine
from scanners.prefilter import hyperscan_available

SEED = 20261122


@dataclass(frozen=True)
class Planted:
    """A planted key: where it is and how it looks there."""

    key: str
    path: str
    line: int
    shown: str  # the text as planted (encoded form included)
    context: str


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CONTEXTS: dict[str, Callable[[str, random.Random], str]] = {
    "dotenv": lambda k, r: f"STRIPE_SECRET_KEY={k}",
    "json": lambda k, r: json.dumps({"payments": {"api_key": k, "retries": r.randint(1, 9)}}),
    "yaml": lambda k, r: f"    api_key: {k}",
    "python": lambda k, r: f"client = PaymentsClient(api_key='{k}', timeout={r.randint(1, 60)})",
    "javascript": lambda k, r: f'const client = require("payments")("{k}");',
    "go": lambda k, r: f'\tclient := payments.New("{k}")',
    "header": lambda k, r: f"#   Authorization: Bearer {k}",
    "curl": lambda k, r: f"# curl https://api.example.com/v1/charges -u {k}: -d amount=100",
    "url": lambda k, r: f"URL = 'https://api.example.com/v1/users?api_key={k}&page=2'",
    "k8s-secret": lambda k, r: f"  api-key: {_b64(k)}",
    "basic-auth": lambda k, r: f"headers = {{'Authorization': 'Basic {_b64('acct:' + k)}'}}",
    "percent": lambda k, r: (
        "CALLBACK = 'https://h.example/cb?k=" + quote(k, safe="").replace("_", "%5F") + "'"
    ),
    "json-escaped": lambda k, r: "payload = '" + json.dumps(k).replace("_", "\\u005f") + "'",
    "minified": lambda k, r: "var a=function(){return 1};" * 3700 + f'var k="{k}";' + "f();" * 99,
    "crlf": lambda k, r: f"API_KEY = '{k}'\r",
}


def _make_key(r: random.Random, i: int) -> str:
    """A key-shaped string: current format with checksum, or an older body without one."""
    prefix = KNOWN_PREFIXES[i % len(KNOWN_PREFIXES)]
    style = i % 4
    if style in (0, 1):
        body = "".join(r.choice(BASE62) for _ in range(43))
        return prefix + body + checksum(prefix, body)
    if style == 2:  # seed design: url-safe base64 of 16..48 random bytes
        return prefix + base64.urlsafe_b64encode(r.randbytes(r.randint(16, 48))).decode().rstrip(
            "="
        )
    return prefix + r.randbytes(r.choice((16, 20, 32))).hex()  # older hex bodies


def _collect_files(mb: float) -> list[tuple[str, list[str]]]:
    root = Path(sysconfig.get_paths()["purelib"])
    files, total = [], 0
    for path in sorted(root.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not text:
            continue
        files.append((str(path.relative_to(root)), text.split("\n")))
        total += len(text)
        if total >= mb * 1e6:
            break
    return files


def build_corpus(mb: float, n_keys: int) -> tuple[str, list[Planted]]:
    """A git diff of added files with ``n_keys`` planted keys, and where they are."""
    r = random.Random(SEED)
    files = _collect_files(mb)
    names = sorted(CONTEXTS)
    inserts: dict[int, list[tuple[int, Planted]]] = {}
    for i in range(n_keys):
        key, context = _make_key(r, i), names[i % len(names)]
        fi = r.randrange(len(files))
        pos = r.randrange(len(files[fi][1]) + 1)
        shown = CONTEXTS[context](key, r)
        inserts.setdefault(fi, []).append((pos, Planted(key, files[fi][0], 0, shown, context)))
    planted: list[Planted] = []
    parts = []
    for fi, (path, lines) in enumerate(files):
        lines = list(lines)
        for pos, p in sorted(inserts.get(fi, []), key=lambda t: -t[0]):
            lines.insert(pos, p.shown)
        for _, p in inserts.get(fi, []):
            n = next(n for n, line in enumerate(lines, 1) if line is p.shown)
            planted.append(Planted(p.key, path, n, p.shown, p.context))
        body = "".join(f"+{line}\n" for line in lines)
        parts.append(
            f"diff --git a/{path} b/{path}\nnew file mode 100644\nindex 0000000..1111111\n"
            f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{len(lines)} @@\n{body}"
        )
    return "".join(parts), planted


def run_keywatch(
    corpus: str, planted: list[Planted], repeat: int = 3, prefilter: str = "auto"
) -> dict[str, object]:
    """Time keywatch's engine (rules loaded once, as in the long-running worker); best of N."""
    engine = Engine.default(prefilter=prefilter)
    engine.scan_diff(corpus[:100_000])  # warm-up: first-use allocations, regex caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        found = engine.scan_diff(corpus)
        times.append(time.perf_counter() - t0)
    want = {hash_key(p.key) for p in planted}
    got = {c.key_hash for c in found}
    fps = [c for c in found if c.key_hash not in want]
    return {
        "seconds": min(times),
        "all_seconds": [round(t, 3) for t in times],
        "found": len(want & got),
        "false_positives": len(fps),
        "fp_rules": sorted({c.rule_id for c in fps}),
        "by_encoding": dict(Counter(c.encoding for c in found if c.key_hash in want)),
    }


def run_detect_secrets(corpus: str, planted: list[Planted]) -> dict[str, object]:
    """Time detect-secrets 1.x in-process over the same diff, default plugins and filters."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    collection = SecretsCollection()
    # detect-secrets drops diff files that do not exist on disk (its is_invalid_file filter):
    # write the post-image of every file and scan from there, untimed.
    with tempfile.TemporaryDirectory() as tmp, _cwd(Path(tmp)):
        for path, text in _post_images(corpus).items():
            target = Path(tmp, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        with default_settings():
            t0 = time.perf_counter()
            collection.scan_diff(corpus)
            elapsed = time.perf_counter() - t0
    by_line: dict[tuple[str, int], list[str]] = {}
    total = 0
    for filename, secret in collection:
        total += 1
        by_line.setdefault((filename, secret.line_number), []).append(secret.secret_value or "")
    found = 0
    for p in planted:
        values = by_line.get((p.path, p.line), [])
        if any(v and (v in p.shown or p.key in v) and len(v) >= 16 for v in values):
            found += 1
    planted_lines = {(p.path, p.line) for p in planted}
    fps = sum(len(v) for k, v in by_line.items() if k not in planted_lines)
    return {"seconds": elapsed, "found": found, "false_positives": fps, "reported": total}


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _post_images(corpus: str) -> dict[str, str]:
    """Each file's content after the diff (all its lines are added lines)."""
    files: dict[str, list[str]] = {}
    for line in iter_added_lines(corpus):
        files.setdefault(line.path or "unknown", []).append(line.text)
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


def _repeat(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


# Adversarial inputs of the hardening issue: keyword-dense text and long encoded runs.
DENSE: dict[str, Callable[[int], str]] = {
    "sk_live_ glued": lambda n: _repeat("sk_live_", n),
    "sk_live_ spaced": lambda n: _repeat("sk_live_ ", n),
    "base64 of sk_live_": lambda n: _b64(_repeat("sk_live_ ", n * 3 // 4)),
    "AKIA": lambda n: _repeat("AKIA", n),
    "xoxb-": lambda n: _repeat("xoxb-1234567890-", n),
    "mixed keywords": lambda n: _repeat("sk_live_x AKIA xoxb-1 ghp_ github_pat_ ", n),
    "percent run": lambda n: "q=" + _repeat("sk%5Flive%5F", n),
    "json-escaped run": lambda n: '"' + _repeat("sk\\u005flive\\u005f", n),
}


def run_dense(mb: float, prefilter: str = "auto") -> dict[str, float]:
    """MB/s of the engine on each keyword-dense family of ``mb`` megabytes (best of 2)."""
    engine = Engine.default(prefilter=prefilter)
    out: dict[str, float] = {}
    for name, make in DENSE.items():
        text = make(int(mb * 1e6))
        best = min(_timed(lambda t=text: engine.scan_text(t)) for _ in range(2))
        out[name] = round(len(text) / 1e6 / best, 2)
    return out


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare_prefilters(corpus: str, engine: Engine) -> dict[str, float]:
    """MB/s of the engine's parts and of the alternatives we measured against them."""
    keywords = {k for rule in engine.ruleset.rules for k in rule.keywords}
    forms = decoders.encoded_keywords(keywords, engine.limits.max_depth)
    main = keywords | {f for f, enc in forms.items() if enc != "base64"}
    size = len(corpus.encode()) / 1e6
    out: dict[str, float] = {
        "main keywords": len(main),
        "base64 signatures": len(forms) - len(main),
    }

    def rate(label: str, fn: Callable[[], object]) -> None:
        t0 = time.perf_counter()
        fn()
        out[label] = round(size / (time.perf_counter() - t0), 1)

    automaton = ahocorasick.Automaton()
    for k in main:
        automaton.add_word(k, k)
    automaton.make_automaton()
    everything = ahocorasick.Automaton()
    for k in main | set(forms):
        everything.add_word(k, k)
    everything.make_automaton()
    combined = re.compile("|".join(re.escape(k) for k in sorted(main, key=len, reverse=True)))
    rate("aho-corasick, main keywords MB/s", lambda: sum(1 for _ in automaton.iter(corpus)))
    rate("combined regex, main keywords MB/s", lambda: sum(1 for _ in combined.finditer(corpus)))
    rate("aho-corasick incl. base64 sigs MB/s", lambda: sum(1 for _ in everything.iter(corpus)))
    rate("base64 runs MB/s", lambda: decoders.base64_runs(corpus))
    return out


def main() -> None:
    """Build the corpus, run both scanners, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=40.0, help="corpus size in MB (default 40)")
    parser.add_argument("--keys", type=int, default=200, help="planted keys (default 200)")
    parser.add_argument("--no-detect-secrets", action="store_true", help="skip detect-secrets")
    parser.add_argument("--prefilters", action="store_true", help="also time prefilter choices")
    parser.add_argument(
        "--dense-mb", type=float, default=2.0, help="size of each keyword-dense input (0: skip)"
    )
    args = parser.parse_args()

    corpus, planted = build_corpus(args.mb, args.keys)
    size = len(corpus.encode()) / 1e6
    contexts = sorted({p.context for p in planted})
    print(
        f"corpus: {size:.1f} MB of diff, {corpus.count(chr(10)):,} lines, {len(planted)} planted "
        f"keys in {len(contexts)} contexts"
    )
    prefilters = ["aho-corasick"] + (["hyperscan"] if hyperscan_available() else [])
    rows = [(f"keywatch {p}", run_keywatch(corpus, planted, prefilter=p)) for p in prefilters]
    if not args.no_detect_secrets:
        rows.append(("detect-secrets", run_detect_secrets(corpus, planted)))
    print(f"\n{'scanner':<24}{'MB/s':>10}{'seconds':>10}{'found':>12}{'false pos.':>12}")
    for name, r in rows:
        secs = float(str(r["seconds"]))
        print(
            f"{name:<24}{size / secs:>10.2f}{secs:>10.2f}{r['found']!s:>8}/{len(planted):<3}"
            f"{r['false_positives']!s:>12}"
        )
    for name, r in rows:
        print(f"\n{name} details: {r}")
    if args.dense_mb > 0:
        print(f"\nkeyword-dense inputs, {args.dense_mb:g} MB each, MB/s (real code: rows above)")
        dense = {p: run_dense(args.dense_mb, p) for p in prefilters}
        print(f"  {'input':<22}" + "".join(f"{p:>14}" for p in prefilters))
        for name in DENSE:
            print(f"  {name:<22}" + "".join(f"{dense[p][name]:>14.2f}" for p in prefilters))
    if args.prefilters:
        print(
            "\nprefilter:",
            {k: round(v, 1) for k, v in compare_prefilters(corpus, Engine.default()).items()},
        )


if __name__ == "__main__":
    main()

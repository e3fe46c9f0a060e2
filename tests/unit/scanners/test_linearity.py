"""The engine's time grows linearly with its input on adversarial inputs.

Asserted as a ratio, never an absolute time: the same input family at n and 4n characters,
best CPU time of several runs; linear work gives a ratio near 4, the quadratic paths this
guards against gave 16 or more. The bound (8) leaves room for a busy shared machine.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest

from core.decoders import DecodeLimits
from core.keyformat import generate_key, hash_key
from scanners.engine import Engine
from scanners.prefilter import hyperscan_available
from scanners.rules import load_rules

KEY = generate_key("live").secret
N = 100_000
RATIO_BOUND = 8.0
PREFILTER_KINDS = ["aho-corasick"] + (["hyperscan"] if hyperscan_available() else [])


def _repeat(unit: str, n: int) -> str:
    return (unit * (n // len(unit) + 1))[:n]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Each family builds about n characters and hides one real key at the end, so the scan must
# still go through the whole input and find it.
FAMILIES: dict[str, Callable[[int], str]] = {
    "glued prefixes": lambda n: _repeat("sk_live_", n) + " " + KEY,
    "spaced prefixes": lambda n: _repeat("sk_live_ ", n) + " " + KEY,
    "prefix with short body": lambda n: _repeat("sk_live_abc123 ", n) + " " + KEY,
    "base64 of prefixes": lambda n: _b64(_repeat("sk_live_", n * 3 // 4) + " " + KEY),
    "aws ids": lambda n: _repeat("AKIA", n) + " " + KEY,
    "slack prefixes": lambda n: _repeat("xoxb-1234567890-", n) + " " + KEY,
    "mixed keywords": lambda n: _repeat("sk_live_x AKIA xoxb-1 ghp_ github_pat_ ", n) + " " + KEY,
    "percent span": lambda n: "q=" + _repeat("sk%5Flive%5F", n) + "%20" + KEY.replace("_", "%5F"),
    "json span": lambda n: (
        '"' + _repeat("sk\\u005flive\\u005f", n) + "\\u0020" + KEY.replace("_", "\\u005f")
    ),
    "base64 runs joined by _": lambda n: (
        _repeat(_b64("sk_live_ sk_live_") + "_", n) + " " + _b64(KEY)
    ),
    "double base64": lambda n: _b64(_b64(_repeat("sk_live_ ", n // 2) + " " + KEY)),
}


def _ratio(large: Callable[[], object], small: Callable[[], object], runs: int = 5) -> float:
    """Best CPU time of ``large`` over best CPU time of ``small``: this thread's CPU time, not
    the wall clock, so other processes on a shared machine do not count; runs interleaved."""
    best = [float("inf"), float("inf")]
    for _ in range(runs):
        for i, fn in enumerate((large, small)):
            t0 = time.thread_time()
            fn()
            best[i] = min(best[i], time.thread_time() - t0)
    return best[0] / best[1]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scan_text_is_linear(engine: Engine, family: str) -> None:
    small, large = FAMILIES[family](N), FAMILIES[family](4 * N)
    for text in (small, large):
        assert hash_key(KEY) in {c.key_hash for c in engine.scan_text(text)}
    ratio = _ratio(lambda: engine.scan_text(large), lambda: engine.scan_text(small))
    assert ratio < RATIO_BOUND, f"{family}: 4x the input took {ratio:.1f}x the time"


@pytest.mark.parametrize("family", ["glued prefixes", "mixed keywords", "percent span"])
def test_scan_diff_and_patch_are_linear(engine: Engine, family: str) -> None:
    def diff(n: int) -> str:
        body = FAMILIES[family](n)
        return f"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -0,0 +1,2 @@\n+{body}\n+end\n"

    small, large = diff(N), diff(4 * N)
    patch = large.split("\n", 3)[3]
    assert hash_key(KEY) in {c.key_hash for c in engine.scan_diff(large)}
    assert hash_key(KEY) in {c.key_hash for c in engine.scan_patch("x", patch)}
    ratio = _ratio(lambda: engine.scan_diff(large), lambda: engine.scan_diff(small))
    assert ratio < RATIO_BOUND, f"{family}: 4x the diff took {ratio:.1f}x the time"


@pytest.mark.parametrize("prefilter", PREFILTER_KINDS)
@pytest.mark.parametrize("family", ["percent span", "json span", "base64 runs joined by _"])
def test_spans_longer_than_the_decode_limit_stay_linear(family: str, prefilter: str) -> None:
    # Decode limit above the small input and below the large one: a run over the limit used
    # to be measured again from every trigger inside it (quadratic), and then skipped.
    engine = Engine(load_rules(), DecodeLimits(max_bytes=N // 2), prefilter)
    small, large = FAMILIES[family](N), FAMILIES[family](4 * N)
    for text in (small, large):
        assert hash_key(KEY) in {c.key_hash for c in engine.scan_text(text)}
    ratio = _ratio(lambda: engine.scan_text(large), lambda: engine.scan_text(small), 3)
    assert ratio < RATIO_BOUND, f"{family}: 4x the input took {ratio:.1f}x the time"

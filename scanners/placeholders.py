"""Placeholder and decoy detection: key-shaped strings that are documentation, not secrets.

Checked on the part of a candidate after its keyword (the "body"). Real bodies are random:
base62/base64/hex from a CSPRNG, so they have high Shannon entropy, no long runs, no counting
patterns and no English words of five letters or more (odds for one given five-letter word at one
position in random base62, case-insensitively: (2/62)^5 ≈ 3.5e-8).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from typing import Final

# Words found in documentation placeholders; all five letters or more (see module docstring).
_WORDS: Final = re.compile(
    r"(?i)example|your[_-]|placeholder|dummy|sample|redacted|changeme|insert|replace|xxxxx|"
    r"secret[_-]?key|api[_-]?key|token[_-]here|key[_-]here|fake[_-]|testkey|mykey"
)
# Template syntax that may survive into a match when the rule's charset allows it.
_TEMPLATE: Final = re.compile(r"\$\{|\{\{|\}\}|<[A-Za-z_]+>|%\([a-z_]+\)s")
_RUN: Final = re.compile(r"(.)\1{5,}")  # six identical characters in a row
# Identifier-like decoys: words joined by separators (events_processed_total) or CamelCase.
# Each word starts at a separator or a capital, so the regex cannot backtrack exponentially.
_WORDY: Final = re.compile(r"[A-Za-z]{2,}(?:[_-][A-Za-z]{2,})+|[A-Z]?[a-z]+(?:[A-Z][a-z]+)*")
_SEQUENTIAL_RATIO: Final = 0.6  # random base62 scores ~0.05; a1b2c3…, 0123…, abcd… score ~1


def shannon_entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character (0.0 for the empty string)."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def is_sequential(body: str) -> bool:
    """True for counting patterns like ``a1b2c3d4``, ``0123456789abcdef`` or ``abcdefgh``."""
    letters = [ord(c) for c in body.lower() if c.isalpha()]
    digits = [int(c) for c in body if c.isdigit()]
    steps = sum(1 for a, b in itertools.pairwise(letters) if b - a in (1, -25))
    steps += sum(1 for a, b in itertools.pairwise(digits) if (b - a) % 10 == 1)
    pairs = max(len(letters) - 1, 0) + max(len(digits) - 1, 0)
    return pairs >= 6 and steps / pairs >= _SEQUENTIAL_RATIO


def is_placeholder(body: str, entropy_min: float | None = None) -> bool:
    """True when ``body`` (a candidate without its keyword) is a placeholder or a decoy."""
    if _WORDS.search(body) or _TEMPLATE.search(body) or _RUN.search(body):
        return True
    if _WORDY.fullmatch(body) or is_sequential(body):
        return True
    return entropy_min is not None and shannon_entropy(body) < entropy_min

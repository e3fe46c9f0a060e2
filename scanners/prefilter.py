"""The keyword prefilter: every occurrence of every keyword (and encoded form) in one pass.

Two implementations of one interface, ``hits(text) -> [(end, entries)]`` in increasing ``end``
(the index of a hit's last character), where ``entries`` are what the keyword stands for:

- ``HyperscanPrefilter`` (Intel Hyperscan / Vectorscan through the ``hyperscan`` package, SIMD
  literal matching): used when the package imports. It also holds the base64 signatures, so no
  separate pass looks for base64 runs. On 22 MB of real-code diffs it ran at ~3.7 GB/s with the
  signatures against 190 MB/s for the Aho-Corasick automaton without them
  (``benchmarks/scanner_bench.py --prefilters``).
- ``AhoCorasickPrefilter`` (pyahocorasick): the fallback everywhere. Its automaton ran 2-4x
  slower with the signatures in it, so those are searched only inside base64 runs
  (``Engine._base64_spans``).

Hyperscan scans bytes: the text is encoded as latin-1 with ``replace``, one byte per character,
so byte offsets are string offsets (every keyword is ASCII; a character above U+00FF becomes
``?``, which no keyword contains).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, Generic, Protocol, TypeVar

import ahocorasick

try:  # optional: wheels exist for x86-64 Linux and macOS
    import hyperscan
except ImportError:  # pragma: no cover - depends on the platform
    hyperscan = None  # type: ignore[assignment]

T = TypeVar("T")
_ID_BITS: Final = 20  # pattern ids below 2**20 (a rules file has a few hundred keywords)
_BLOCK: Final = 256 * 1024
T_co = TypeVar("T_co", covariant=True)
PREFILTERS: Final = ("auto", "hyperscan", "aho-corasick")


class Prefilter(Protocol[T_co]):
    """Finds every keyword occurrence; ``includes_base64``: the base64 signatures are in it."""

    @property
    def includes_base64(self) -> bool:
        """Whether the base64 signatures are searched by this prefilter."""
        ...

    def hits(self, text: str) -> Iterable[tuple[int, T_co]]:
        """(index of the last character, entries) of each occurrence, in order."""
        ...


def hyperscan_available() -> bool:
    """Whether the ``hyperscan`` package imports on this machine."""
    return hyperscan is not None


class AhoCorasickPrefilter(Generic[T]):
    """pyahocorasick's automaton over the keywords (base64 signatures kept out)."""

    includes_base64 = False

    def __init__(self, table: Mapping[str, T]) -> None:
        self._automaton = ahocorasick.Automaton()
        for keyword, entries in table.items():
            self._automaton.add_word(keyword, entries)
        self._automaton.make_automaton()

    def hits(self, text: str) -> Iterable[tuple[int, T]]:
        """Occurrences in order of their end."""
        return self._automaton.iter(text)  # type: ignore[no-any-return]


class HyperscanPrefilter(Generic[T]):
    """A Hyperscan literal database over the keywords and the base64 signatures."""

    includes_base64 = True

    def __init__(self, table: Mapping[str, T]) -> None:
        if hyperscan is None:
            raise RuntimeError("the hyperscan package is not installed")
        self._entries: Sequence[T] = list(table.values())
        self._db: Any = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        words = [k.encode("latin-1") for k in table]
        if len(words) >= 1 << _ID_BITS:
            raise ValueError(f"too many keywords for the prefilter: {len(words)}")
        self._db.compile(
            expressions=words, ids=list(range(len(words))), elements=len(words), literal=True
        )
        self._local = threading.local()  # Hyperscan scratch space is per thread

    def _scratch(self) -> Any:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        return scratch

    def hits(self, text: str) -> Iterator[tuple[int, T]]:
        """Occurrences in order of their end (sorted: cheap, and order is what callers need).

        Each hit is kept as one int (end << 20 | pattern id), not a tuple: ints are not tracked
        by the cyclic garbage collector, so a keyword-dense input holding a million hits does
        not make every collection walk them (which made this quadratic in a first version).
        """
        pos = 0
        while pos < len(text):
            # Blocks cut at newlines (no keyword holds one): a slice of a wide (UCS-2/4) string
            # that is all ASCII becomes a compact ASCII string, whose encoding is a plain copy;
            # the whole 22 MB benchmark diff encoded 2.5x slower as one piece.
            cut = text.find("\n", pos + _BLOCK)
            cut = len(text) if cut < 0 else cut
            yield from self._block(text[pos:cut] if pos or cut < len(text) else text, pos)
            pos = cut

    def _block(self, text: str, offset: int) -> Iterator[tuple[int, T]]:
        found: list[int] = []
        append = found.append

        def on_match(pid: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            append((end - 1) << _ID_BITS | pid)

        data = text.encode("latin-1", "replace")
        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())
        del data
        found.sort()
        entries, mask = self._entries, (1 << _ID_BITS) - 1
        for packed in found:
            yield offset + (packed >> _ID_BITS), entries[packed & mask]


def make_prefilter(
    table: Mapping[str, T],
    signatures: Mapping[str, T],
    kind: str = "auto",
) -> tuple[Prefilter[T], AhoCorasickPrefilter[T] | None]:
    """The prefilter of ``kind`` (``auto``: Hyperscan when available) over ``table``; Hyperscan
    also holds the base64 ``signatures``, Aho-Corasick gets them as a second automaton that
    the engine runs inside base64 runs only."""
    if kind not in PREFILTERS:
        raise ValueError(f"prefilter must be one of {PREFILTERS}, not {kind!r}")
    if kind == "hyperscan" or (kind == "auto" and hyperscan_available()):
        merged = {**signatures, **table}  # a keyword that is also a signature stays a keyword
        return HyperscanPrefilter(merged), None
    return AhoCorasickPrefilter(table), AhoCorasickPrefilter(signatures) if signatures else None

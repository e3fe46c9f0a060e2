"""Reading lines with a bound: a line longer than the limit is skipped without being held.

``for line in stream`` keeps a whole line in memory however long it is; one line of a gzip bomb
(860 MB decompressed from a few MB) is enough to exhaust a small machine. ``bounded_lines``
reads at most ``max_bytes + 1`` bytes at a time and reports an over-long line as ``None`` (the
caller counts it as a reject), having read past it in pieces of the same size.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Final

MAX_LINE_BYTES: Final = 8 * 1024 * 1024  # well above Kafka's default 1 MB message limit


def bounded_lines(stream: IO[bytes], max_bytes: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """Each line of ``stream`` (newline kept), or None for a line over ``max_bytes``."""
    limit = max_bytes + 1  # room for the newline
    while True:
        line = stream.readline(limit)
        if not line:
            return
        if len(line) < limit or line.endswith(b"\n"):
            yield line
            continue
        while line and not line.endswith(b"\n"):  # skip the rest of the over-long line
            line = stream.readline(limit)
        yield None

"""Fetching what a push changed from GitHub and GitLab (httpx, only the configured API bases)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from scanners.push import CodePush

# Whole files fetched when a patch is missing are capped: bigger ones are generated or vendored.
MAX_FILE_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileChange:
    """One changed file: its patch (added lines scanned) or, when the host had none, its content."""

    path: str
    commit: str
    patch: str | None = None
    content: str | None = None


class Fetcher(Protocol):
    """Something that returns the changed files of a push."""

    async def fetch(self, push: CodePush) -> list[FileChange]:
        """The files the push changed (empty for a deleted branch)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def change_of(
    path: str, commit: str, patch: object, raw: Callable[[], Awaitable[str | None]]
) -> FileChange | None:
    """The file's patch when the host gave one, else its whole content (None: binary or gone).

    Hosts omit or truncate patches of large files; scanning the file whole finds the same keys.
    """
    if isinstance(patch, str) and patch:
        return FileChange(path, commit, patch=patch)
    content = await raw()
    return None if content is None else FileChange(path, commit, content=content)


def decode_text(data: bytes) -> str | None:
    """File bytes as text, or None for binary content (a NUL byte) and oversized files."""
    if len(data) > MAX_FILE_BYTES or b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")

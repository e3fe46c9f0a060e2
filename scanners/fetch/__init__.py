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
    # Why (part of) the file was not scanned: "too_large" (only the first MAX_FILE_BYTES were),
    # "not_fetched" (gone, or refused by the host or by our URL checks). Reported, never dropped.
    skipped: str | None = None
    # A commit message the host listed (GitLab's payload holds only the newest 20 commits; its
    # compare API lists them all): scanned as text, ``path`` is empty.
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RawFile:
    """A whole file as fetched: at most ``MAX_FILE_BYTES`` of it, and whether it was longer."""

    data: bytes
    truncated: bool = False


class Fetcher(Protocol):
    """Something that returns the changed files of a push."""

    async def fetch(self, push: CodePush) -> list[FileChange]:
        """The files the push changed (empty for a deleted branch)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


async def change_of(
    path: str, commit: str, patch: object, raw: Callable[[], Awaitable[RawFile | None]]
) -> FileChange:
    """The file's patch when the host gave one, else its whole content (``skipped``: gone).

    Hosts omit or truncate patches of large files; scanning the file whole finds the same keys.
    """
    if isinstance(patch, str) and patch:
        return FileChange(path, commit, patch=patch)
    fetched = await raw()
    if fetched is None:
        return FileChange(path, commit, skipped="not_fetched")
    skipped = "too_large" if fetched.truncated else None
    return FileChange(path, commit, content=decode_text(fetched.data), skipped=skipped)


def decode_text(data: bytes) -> str:
    """File bytes as text; binary content (a NUL byte) as latin-1, where ASCII keys stay whole."""
    if b"\x00" in data[:8192]:
        return data.decode("latin-1")
    return data.decode("utf-8", "replace")

"""Scan a push: fetch the changed files, run the engine over them, verify and respond.

The engine is CPU-bound and pure, so it runs in a worker thread; fetching and the response stay
on the event loop. Files with a patch are scanned on their added lines only; files the host gave
no patch for are scanned whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from scanners.fetch import Fetcher, FileChange
from scanners.push import CodePush
from scanners.response import CandidateLike, Finding, LeakContext, LeakResponder
from worker.errors import InputError


class ScanEngine(Protocol):
    """The part of ``scanners.engine.Engine`` a push scan uses."""

    def scan_text(self, text: str, path: str | None = None) -> Sequence[CandidateLike]:
        """Candidates in a whole file."""
        ...

    def scan_patch(self, path: str, patch: str) -> Sequence[CandidateLike]:
        """Candidates on the added lines of a per-file patch."""
        ...


def scan_changes(
    engine: ScanEngine, changes: Sequence[FileChange]
) -> list[tuple[FileChange, list[CandidateLike]]]:
    """Each changed file with its candidates (files without any are left out)."""
    out: list[tuple[FileChange, list[CandidateLike]]] = []
    for change in changes:
        if change.patch is not None:
            found = list(engine.scan_patch(change.path, change.patch))
        else:
            found = list(engine.scan_text(change.content or "", change.path))
        if found:
            out.append((change, found))
    return out


class PushScanner:
    """fetch -> scan -> verify -> respond, for one push at a time."""

    def __init__(
        self, engine: ScanEngine, fetchers: Mapping[str, Fetcher], responder: LeakResponder
    ) -> None:
        self.engine, self.fetchers, self.responder = engine, fetchers, responder

    async def scan(self, push: CodePush) -> list[Finding]:
        """Every finding of the push (the response is applied once per key hash)."""
        fetcher = self.fetchers.get(push.source)
        if fetcher is None:
            raise InputError(f"no fetcher for source {push.source!r}", "unknown_source")
        changes = await fetcher.fetch(push)
        if not changes:
            return []
        scanned = await asyncio.to_thread(scan_changes, self.engine, changes)
        findings: list[Finding] = []
        for change, candidates in scanned:
            ctx = LeakContext(push.source, push.repository, change.commit, push.url)
            findings += await self.responder.respond(candidates, ctx)
        return findings

    async def close(self) -> None:
        """Close every fetcher."""
        for fetcher in self.fetchers.values():
            await fetcher.close()

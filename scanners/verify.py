"""Scan a push: fetch the changed files, run the engine over them, verify and respond.

The engine is CPU-bound and pure, so it runs in a worker thread; fetching and the response stay
on the event loop. Files with a patch are scanned on their added lines only; files the host gave
no patch for are scanned whole. Commit messages and file paths are scanned too: both are public.

Each push has a time budget (``budget_s``): the files left when it is spent are handed to
``on_deferred`` (the agent scans them in the background or dead-letters them with a reason), so
one huge push cannot hold back every later one. Files that could not be scanned (or only in
part) are handed to ``on_skipped``: nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from core.errors import InputError
from scanners.fetch import Fetcher, FileChange
from scanners.push import CodePush
from scanners.response import CandidateLike, Finding, LeakContext, Responder

DEFAULT_BUDGET_S = 30.0
# Third-party tokens answered per push: a file of 250k random-looking AKIA ids must not become
# 250k findings and Slack messages. Keys of ours (platform) are never capped: each one may be
# live and must be checked. What is over the cap is reported through ``on_skipped``.
MAX_THIRD_PARTY_PER_PUSH = 500


class ScanEngine(Protocol):
    """The part of ``scanners.engine.Engine`` a push scan uses."""

    def scan_text(
        self, text: str, path: str | None = None, location: str = "content"
    ) -> Sequence[CandidateLike]:
        """Candidates in a whole file (or a commit message)."""
        ...

    def scan_patch(self, path: str, patch: str) -> Sequence[CandidateLike]:
        """Candidates on the added lines of a per-file patch."""
        ...

    def scan_path(self, path: str) -> Sequence[CandidateLike]:
        """Candidates in a file path."""
        ...

    def safe_path(self, path: str | None) -> str | None:
        """The path with any secret in it redacted."""
        ...


@dataclass(slots=True)
class Scanned:
    """What one scan pass found, per commit, and the files it had no time for."""

    found: list[tuple[str, list[CandidateLike]]] = field(default_factory=list)  # (commit, cands)
    deferred: list[FileChange] = field(default_factory=list)


def scan_changes(
    engine: ScanEngine, changes: Sequence[FileChange], deadline: float = float("inf")
) -> Scanned:
    """Each changed file's candidates (paths included) until ``deadline`` (monotonic)."""
    out = Scanned()
    for i, change in enumerate(changes):
        if time.monotonic() > deadline:
            out.deferred = list(changes[i:])
            break
        if change.message is not None:
            found = list(engine.scan_text(change.message, None, "commit_message"))
            if found:
                out.found.append((change.commit, found))
            continue
        found = list(engine.scan_path(change.path))
        if change.patch is not None:
            found += engine.scan_patch(change.path, change.patch)
        elif change.content is not None:
            found += engine.scan_text(change.content, change.path)
        if found:
            out.found.append((change.commit, found))
    return out


def scan_messages(engine: ScanEngine, push: CodePush) -> Scanned:
    """Candidates in the pushed commits' messages."""
    out = Scanned()
    for commit, message in push.messages:
        found = list(engine.scan_text(message, None, "commit_message"))
        if found:
            out.found.append((commit or push.after, found))
    return out


class _Cap:
    """Counts third-party candidates against the per-push cap; remembers what it dropped."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.dropped: dict[str, int] = {}

    def keep(self, commit: str, candidates: list[CandidateLike]) -> list[CandidateLike]:
        ours = [c for c in candidates if c.kind == "platform"]
        theirs = [c for c in candidates if c.kind != "platform"]
        kept = theirs[: max(0, self.left)]
        self.left -= len(kept)
        if len(theirs) > len(kept):
            self.dropped[commit] = self.dropped.get(commit, 0) + len(theirs) - len(kept)
        return ours + kept


Deferred = Callable[[CodePush, list[FileChange]], Awaitable[None]]
Skipped = Callable[[CodePush, list[FileChange]], Awaitable[None]]


class PushScanner:
    """fetch -> scan -> verify -> respond, for one push at a time."""

    def __init__(
        self,
        engine: ScanEngine,
        fetchers: Mapping[str, Fetcher],
        responder: Responder,
        *,
        budget_s: float = DEFAULT_BUDGET_S,
        on_deferred: Deferred | None = None,
        on_skipped: Skipped | None = None,
    ) -> None:
        self.engine, self.fetchers, self.responder = engine, fetchers, responder
        self.budget_s, self.on_deferred, self.on_skipped = budget_s, on_deferred, on_skipped
        self.max_third_party = MAX_THIRD_PARTY_PER_PUSH

    async def scan(self, push: CodePush) -> list[Finding]:
        """Every finding of the push (the response is applied once per key hash)."""
        started = time.monotonic()
        fetcher = self.fetchers.get(push.source)
        if fetcher is None:
            raise InputError(f"no fetcher for source {push.source!r}", "unknown_source")
        cap = _Cap(self.max_third_party)
        findings = await self._respond(
            push, await asyncio.to_thread(scan_messages, self.engine, push), cap
        )
        changes = await fetcher.fetch(push)
        skipped = [c for c in changes if c.skipped is not None]
        if skipped and self.on_skipped is not None:
            await self.on_skipped(push, skipped)
        deadline = started + self.budget_s
        scanned = await asyncio.to_thread(scan_changes, self.engine, changes, deadline)
        findings += await self._respond(push, scanned, cap)
        if scanned.deferred:
            if self.on_deferred is None:  # nobody to hand them to: finish here
                rest = await asyncio.to_thread(scan_changes, self.engine, scanned.deferred)
                findings += await self._respond(push, rest, cap)
            else:
                await self.on_deferred(push, scanned.deferred)
        await self._report_cap(push, cap)
        return findings

    async def scan_deferred(self, push: CodePush, changes: Sequence[FileChange]) -> list[Finding]:
        """Scan files a push had no time for (no budget: this runs in the background)."""
        cap = _Cap(self.max_third_party)
        scanned = await asyncio.to_thread(scan_changes, self.engine, changes)
        findings = await self._respond(push, scanned, cap)
        await self._report_cap(push, cap)
        return findings

    async def _respond(self, push: CodePush, scanned: Scanned, cap: _Cap) -> list[Finding]:
        findings: list[Finding] = []
        for commit, candidates in scanned.found:
            ctx = LeakContext(push.source, push.repository, commit, push.url)
            findings += await self.responder.respond(cap.keep(commit, candidates), ctx)
        return findings

    async def _report_cap(self, push: CodePush, cap: _Cap) -> None:
        if cap.dropped and self.on_skipped is not None:
            await self.on_skipped(push, [
                FileChange("", commit, skipped=f"too_many_third_party_tokens: {n} not reported")
                for commit, n in cap.dropped.items()
            ])  # fmt: skip

    async def close(self) -> None:
        """Close every fetcher."""
        for fetcher in self.fetchers.values():
            await fetcher.close()

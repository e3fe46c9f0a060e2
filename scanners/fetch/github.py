"""GitHub: the compare API for ``before...after`` (files paged past 300), a new branch against the
default branch, per-commit diffs for a repository's first push, raw contents when a patch is
missing (GitHub omits ``patch`` for large and binary files).

ref: GitHub REST "Compare two commits" (files paginated with ``per_page``/``page`` and ``Link``),
"Get repository content" with ``Accept: application/vnd.github.raw``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx

from core.errors import FetchError
from core.retry import RetryPolicy
from scanners.fetch import MAX_FILE_BYTES, FileChange, RawFile, change_of
from scanners.fetch.http import ApiClient, FetchRefused, next_link, path_part
from scanners.push import CodePush

PER_PAGE = 100
MAX_PAGES = 100  # 10,000 files: beyond that a push is an import, not an edit
COMPARE_FILE_CAP = 300  # ref: GitHub REST "Compare two commits": up to 300 files
RAW = "application/vnd.github.raw"
JSON = "application/vnd.github+json"


class GitHubFetcher:
    """Changed files of a GitHub push."""

    def __init__(
        self,
        api_url: str,
        token: str | None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": JSON, "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.api = ApiClient(api_url, headers, retry, transport)

    async def close(self) -> None:
        """Release connections."""
        await self.api.close()

    async def fetch(self, push: CodePush) -> list[FileChange]:
        """The files the push changed; a deleted branch yields nothing."""
        if push.deleted:
            return []
        if push.created:
            if not push.default_branch or push.branch == push.default_branch:
                return await self._commits(push)
            base = push.default_branch
        else:
            base = push.before
        return await self._compare(push, base)

    async def _compare(self, push: CodePush, base: str) -> list[FileChange]:
        path = f"repos/{_repo(push)}/compare/{quote(base, safe='')}...{push.after}"
        files = await self._paged_files(path)
        changes = await self._changes(push, push.after, files)
        if len(files) >= COMPARE_FILE_CAP and push.commits:
            # The compare API lists at most 300 files; the commits API pages through all.
            seen = {c.path for c in changes}
            changes += [c for c in await self._commits(push) if c.path not in seen]
        return changes

    async def _commits(self, push: CodePush) -> list[FileChange]:
        """A first push (nothing to compare with): each pushed commit's own diff."""
        out: list[FileChange] = []
        for sha in push.commits or (push.after,):
            files = await self._paged_files(f"repos/{_repo(push)}/commits/{sha}")
            out += await self._changes(push, sha, files)
        return out

    async def _paged_files(self, path: str) -> list[Mapping[str, Any]]:
        files: list[Mapping[str, Any]] = []
        url: str | None = path
        params: dict[str, Any] | None = {"per_page": PER_PAGE, "page": 1}
        for _page in range(MAX_PAGES):
            if url is None:
                break
            resp = await self.api.get(url, params=params)
            files += _files(resp)
            url, params = next_link(resp), None  # the Link URL carries its own query
        return files

    async def _changes(
        self, push: CodePush, sha: str, files: Iterable[Mapping[str, Any]]
    ) -> list[FileChange]:
        out: dict[str, FileChange] = {}
        for f in files:
            name, status = f.get("filename"), f.get("status")
            if not isinstance(name, str) or status == "removed":
                continue
            raw = partial(self._raw, push, name, sha)
            out[name] = await change_of(name, sha, f.get("patch"), raw)
        return list(out.values())

    async def _raw(self, push: CodePush, path: str, sha: str) -> RawFile | None:
        """The file at ``sha``, its first MAX_FILE_BYTES at most (None when gone or refused)."""
        try:
            data, truncated = await self.api.get_file(
                f"repos/{_repo(push)}/contents/{path_part(path, keep_slashes=True)}",
                MAX_FILE_BYTES, params={"ref": sha}, headers={"Accept": RAW},
            )  # fmt: skip
        except FetchRefused:
            return None
        return RawFile(data, truncated)


def _repo(push: CodePush) -> str:
    owner, _, name = push.project.partition("/")
    return f"{path_part(owner, keep_slashes=False)}/{path_part(name, keep_slashes=False)}"


def _files(resp: httpx.Response) -> list[Mapping[str, Any]]:
    try:
        doc = resp.json()
    except ValueError as exc:
        raise FetchError(f"GitHub answered non-JSON: {exc}") from exc
    files = doc.get("files") if isinstance(doc, dict) else None
    return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []

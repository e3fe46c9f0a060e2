"""GitLab: the repository compare API for ``before..after`` (a new branch from the default
branch), per-commit diffs for a project's first push, raw files when a diff is missing.

ref: GitLab REST "Repositories API: compare branches, tags or commits" (``diffs[].diff``,
``new_path``, ``deleted_file``), "Commits API: get the diff of a commit" (paginated),
"Repository files API: get raw file".
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
MAX_PAGES = 100


class GitLabFetcher:
    """Changed files of a GitLab push."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["PRIVATE-TOKEN"] = token
        self.api = ApiClient(base_url.rstrip("/") + "/api/v4/", headers, retry, transport)

    async def close(self) -> None:
        """Release connections."""
        await self.api.close()

    async def fetch(self, push: CodePush) -> list[FileChange]:
        """The files the push changed; a deleted branch yields nothing."""
        if push.deleted:
            return []
        base = push.before
        if push.created:
            if not push.default_branch or push.branch == push.default_branch:
                return await self._commits(push)
            base = push.default_branch
        resp = await self.api.get(
            f"projects/{_pid(push)}/repository/compare", params={"from": base, "to": push.after}
        )
        doc = _json(resp)
        diffs = doc.get("diffs") if isinstance(doc, dict) else None
        changes = await self._changes(push, push.after, diffs if isinstance(diffs, list) else [])
        return changes + _messages(doc, push)

    async def _commits(self, push: CodePush) -> list[FileChange]:
        out: list[FileChange] = []
        for sha in push.commits or (push.after,):
            diffs: list[Any] = []
            url: str | None = f"projects/{_pid(push)}/repository/commits/{sha}/diff"
            params: dict[str, Any] | None = {"per_page": PER_PAGE, "page": 1}
            for _page in range(MAX_PAGES):
                if url is None:
                    break
                resp = await self.api.get(url, params=params)
                page = _json(resp)
                diffs += page if isinstance(page, list) else []
                url, params = next_link(resp), None
            out += await self._changes(push, sha, diffs)
        return out

    async def _changes(self, push: CodePush, sha: str, diffs: Iterable[Any]) -> list[FileChange]:
        out: dict[str, FileChange] = {}
        for d in diffs:
            if not isinstance(d, Mapping) or d.get("deleted_file") is True:
                continue
            name, diff = d.get("new_path"), d.get("diff")
            if not isinstance(name, str):
                continue
            patch = None if d.get("too_large") else diff
            out[name] = await change_of(name, sha, patch, partial(self._raw, push, name, sha))
        return list(out.values())

    async def _raw(self, push: CodePush, path: str, sha: str) -> RawFile | None:
        """The file at ``sha``, its first MAX_FILE_BYTES at most (None when gone or refused)."""
        try:
            data, truncated = await self.api.get_file(
                f"projects/{_pid(push)}/repository/files/{path_part(path, keep_slashes=False)}/raw",
                MAX_FILE_BYTES, params={"ref": sha},
            )  # fmt: skip
        except FetchRefused:
            return None
        return RawFile(data, truncated)


def _messages(doc: Any, push: CodePush) -> list[FileChange]:
    """The compare's commit messages that the push payload did not already carry."""
    commits = doc.get("commits") if isinstance(doc, dict) else None
    known = {sha for sha, _ in push.messages}
    out: list[FileChange] = []
    for c in commits if isinstance(commits, list) else []:
        if isinstance(c, dict) and isinstance(c.get("message"), str):
            sha = c.get("id") if isinstance(c.get("id"), str) else push.after
            if sha not in known:
                out.append(FileChange("", str(sha)[:64], message=c["message"]))
    return out


def _pid(push: CodePush) -> str:
    return quote(push.project, safe="")


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise FetchError(f"GitLab answered non-JSON: {exc}") from exc

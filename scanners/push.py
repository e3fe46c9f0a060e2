"""The ``code.push`` message: ``{"source", "headers", "payload"}`` as received, and what a
fetcher needs from it (repository, before/after, branch, default branch, deletion).

Webhook payloads are third-party input: every field is type-checked and a message keywatch
cannot use raises ``InputError`` with a reason, which the agent turns into a dead letter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from core.errors import InputError

ZERO_SHA: Final = "0" * 40
SOURCES: Final = ("github", "gitlab")
_SHA: Final = re.compile(r"^[0-9a-f]{7,64}$")
_REPO_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,100}/[A-Za-z0-9_.\-]{1,100}$")
_DOTS: Final = re.compile(r"(^|/)\.{1,2}(/|$)")  # "." or ".." as owner or name: a path trick
# Headers worth keeping on the topic: delivery ids and event names, never signatures or tokens.
KEPT_HEADERS: Final = (
    "x-github-delivery", "x-github-event", "x-github-hook-id", "x-gitlab-event",
    "x-gitlab-event-uuid", "idempotency-key", "x-gitlab-instance", "user-agent",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CodePush:
    """A push to scan: where, between which commits, and the raw message parts."""

    source: str
    repository: str  # "owner/name" (GitHub) or "group/project" (GitLab), for display
    project: str  # what the API addresses: "owner/name" (GitHub) or the numeric id (GitLab)
    before: str
    after: str
    ref: str
    default_branch: str | None
    commits: tuple[str, ...]
    delivery: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # (commit id, message) of the pushed commits: public in the payload and in every patch
    messages: tuple[tuple[str, str], ...] = ()

    @property
    def deleted(self) -> bool:
        """The push deleted the branch: nothing to scan."""
        return self.after == ZERO_SHA

    @property
    def created(self) -> bool:
        """The push created the branch: diff against the default branch."""
        return self.before == ZERO_SHA

    @property
    def branch(self) -> str:
        """The branch (or tag) name without ``refs/heads/``."""
        return self.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")


def selected_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers kept on the ``code.push`` topic (lower-cased names, bounded values)."""
    low = {k.lower(): v for k, v in headers.items()}
    return {k: low[k][:200] for k in KEPT_HEADERS if k in low}


def encode_code_push(source: str, headers: Mapping[str, str], payload: Any) -> bytes:
    """The ``code.push`` message for a received webhook."""
    kept = selected_headers(headers)
    return orjson.dumps({"source": source, "headers": kept, "payload": payload})


def decode_code_push(raw: bytes | str | Mapping[str, Any]) -> CodePush:
    """Parse a ``code.push`` message; raises InputError with a reason."""
    doc = _load(raw)
    source, payload = doc.get("source"), doc.get("payload")
    headers = doc.get("headers") or {}
    if source not in SOURCES:
        raise InputError(f"unsupported code-push source {str(source)[:40]!r}", "unknown_source")
    if not isinstance(payload, Mapping) or not isinstance(headers, Mapping):
        raise InputError("code.push needs an object payload and headers", "bad_push")
    hdrs = {str(k).lower(): str(v)[:200] for k, v in headers.items()}
    if source == "github":
        return _github(payload, hdrs)
    return _gitlab(payload, hdrs)


def _load(raw: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"code.push is not JSON: {exc}", "bad_json") from exc
    if not isinstance(doc, dict):
        raise InputError("code.push must be a JSON object", "bad_push")
    return doc


def _sha(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _SHA.match(value):
        raise InputError(f"push {name} is not a commit sha", "bad_push")
    return value


def _str(value: Any, name: str, limit: int = 300) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InputError(f"push {name} missing or invalid", "bad_push")
    return value


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 300 else None


def _messages(commits: Any, head: Any) -> tuple[tuple[str, str], ...]:
    """(id, message) of every commit in the payload (GitHub's ``head_commit`` included)."""
    items = list(commits) if isinstance(commits, list) else []
    if isinstance(head, Mapping):
        items.append(head)
    out: dict[str, str] = {}
    for c in items:
        if isinstance(c, Mapping) and isinstance(c.get("message"), str):
            cid = c.get("id")
            out.setdefault(cid if isinstance(cid, str) and _SHA.match(cid) else "", c["message"])
    return tuple(out.items())[:2000]


def _commit_ids(commits: Any) -> tuple[str, ...]:
    if not isinstance(commits, list):
        return ()
    ids = [c.get("id") for c in commits if isinstance(c, Mapping)]
    return tuple(i for i in ids if isinstance(i, str) and _SHA.match(i))[:2000]


def _github(payload: Mapping[str, Any], headers: dict[str, str]) -> CodePush:
    repo = payload.get("repository")
    if not isinstance(repo, Mapping):
        raise InputError("push has no repository", "bad_push")
    full = _str(repo.get("full_name"), "repository.full_name", 201)
    if not _REPO_NAME.match(full) or _DOTS.search(full):
        raise InputError("push repository.full_name is not owner/name", "bad_push")
    after = _sha(payload.get("after"), "after")
    if payload.get("deleted") is True:
        after = ZERO_SHA
    return CodePush(
        source="github", repository=full, project=full,
        before=_sha(payload.get("before"), "before"), after=after,
        ref=_str(payload.get("ref"), "ref"), default_branch=_opt_str(repo.get("default_branch")),
        commits=_commit_ids(payload.get("commits")), delivery=headers.get("x-github-delivery"),
        url=_opt_str(repo.get("html_url")), headers=headers,
        messages=_messages(payload.get("commits"), payload.get("head_commit")),
    )  # fmt: skip


def _gitlab(payload: Mapping[str, Any], headers: dict[str, str]) -> CodePush:
    project = payload.get("project")
    project = project if isinstance(project, Mapping) else {}
    pid = payload.get("project_id", project.get("id"))
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InputError("push has no project id", "bad_push")
    name = _opt_str(project.get("path_with_namespace")) or str(pid)
    delivery = headers.get("x-gitlab-event-uuid") or headers.get("idempotency-key")
    return CodePush(
        source="gitlab", repository=name, project=str(pid),
        before=_sha(payload.get("before"), "before"), after=_sha(payload.get("after"), "after"),
        ref=_str(payload.get("ref"), "ref"), default_branch=_opt_str(project.get("default_branch")),
        commits=_commit_ids(payload.get("commits")), delivery=delivery,
        url=_opt_str(project.get("web_url")), headers=headers,
        messages=_messages(payload.get("commits"), None),
    )  # fmt: skip

"""GitHub and GitLab fetchers against local fake API servers: paging, fallbacks, rate limits."""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from core.errors import FetchError
from core.retry import RetryPolicy
from scanners.fetch.github import GitHubFetcher
from scanners.fetch.gitlab import GitLabFetcher
from scanners.fetch.http import FetchRefused
from scanners.push import ZERO_SHA, CodePush
from tests.unit.scanners.codehosts import (
    HostState,
    github_app,
    gitlab_app,
    header,
    rate_limited_403,
    serve,
)

FAST = RetryPolicy(attempts=4, base_delay_s=0.01, max_delay_s=0.2)
A, B = "a" * 40, "b" * 40


def push(source: str = "github", before: str = A, after: str = B, **kw: Any) -> CodePush:
    base = dict(
        source=source, repository="acme/app", project="acme/app" if source == "github" else "42",
        before=before, after=after, ref="refs/heads/feature", default_branch="main",
        commits=(after,),
    )  # fmt: skip
    base.update(kw)
    return CodePush(**base)  # type: ignore[arg-type]


@pytest.fixture
async def gh() -> AsyncIterator[tuple[HostState, TestServer, GitHubFetcher]]:
    state = HostState()
    server = await serve(github_app(state))
    fetcher = GitHubFetcher(str(server.make_url("/")), "ghs_test_token", FAST)
    yield state, server, fetcher
    await fetcher.close()
    await server.close()


@pytest.fixture
async def gl() -> AsyncIterator[tuple[HostState, TestServer, GitLabFetcher]]:
    state = HostState()
    server = await serve(gitlab_app(state))
    fetcher = GitLabFetcher(str(server.make_url("/")), "glpat-test", FAST)
    yield state, server, fetcher
    await fetcher.close()
    await server.close()


def gh_file(i: int, patch: str | None = "@@ -0,0 +1 @@\n+x = 1") -> dict[str, Any]:
    f: dict[str, Any] = {"filename": f"src/f{i}.py", "status": "modified"}
    if patch is not None:
        f["patch"] = patch
    return f


async def test_github_compare_pages_past_300_files(gh: Any) -> None:
    state, _server, fetcher = gh
    state.files = [gh_file(i) for i in range(250)]
    changes = await fetcher.fetch(push())
    assert [c.path for c in changes] == [f"src/f{i}.py" for i in range(250)]
    assert all(c.commit == B and c.patch for c in changes)
    compare_calls = [q for p, q, _h in state.requests if "/compare/" in p]
    assert len(compare_calls) == 3  # 100 per page, following Link headers
    assert header(state.requests[0][2], "authorization") == "Bearer ghs_test_token"
    assert state.requests[0][0] == f"/repos/acme/app/compare/{A}...{B}"


async def test_github_missing_patch_falls_back_to_raw_contents(gh: Any) -> None:
    state, _server, fetcher = gh
    state.files = [gh_file(1), gh_file(2, patch=None), {"filename": "gone.py", "status": "removed"}]
    state.raw["src/f2.py@" + B] = "API_KEY = 'whole file'\n"
    changes = {c.path: c for c in await fetcher.fetch(push())}
    assert set(changes) == {"src/f1.py", "src/f2.py"}
    assert changes["src/f2.py"].content == "API_KEY = 'whole file'\n"
    assert changes["src/f2.py"].patch is None


async def test_github_binary_raw_content_is_scanned_as_latin1(gh: Any) -> None:
    state, _server, fetcher = gh
    state.files = [gh_file(3, patch=None)]
    state.raw["src/f3.py@" + B] = "PNG\x00\x01 sk_live_x"
    (change,) = await fetcher.fetch(push())
    assert change.content == "PNG\x00\x01 sk_live_x" and change.skipped is None


async def test_github_raw_file_is_streamed_and_cut_at_the_limit(
    gh: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, _server, fetcher = gh
    monkeypatch.setattr("scanners.fetch.github.MAX_FILE_BYTES", 256 * 1024)
    state.files = [gh_file(4, patch=None)]
    state.endless.add("src/f4.py@" + B)
    (change,) = await fetcher.fetch(push())
    assert change.skipped == "too_large"
    assert change.content is not None and len(change.content) == 256 * 1024
    # The server stopped soon after the limit: the client did not read (and buffer) it all.
    assert state.streamed < 32 * 1024 * 1024


@pytest.mark.parametrize("name", ["../../../user", "a/../../x", "./x", "a//b", ".."])
async def test_github_file_names_with_dot_segments_are_not_fetched(gh: Any, name: str) -> None:
    state, _server, fetcher = gh
    state.files = [{"filename": name, "status": "added"}]
    (change,) = await fetcher.fetch(push())
    assert change.skipped == "not_fetched"
    assert all("/contents/" not in p and not p.startswith("/user") for p in state.paths()[1:])
    assert len(state.requests) == 1  # the compare call only


@pytest.mark.parametrize(
    "link",
    ["../../../../user?page=2", "/user?page=2", "http://[::1/x", "//evil.example/x?page=2",
     "PLACEHOLDER/../../../user?page=2"],
)  # fmt: skip
async def test_github_bad_link_headers_are_refused(gh: Any, link: str) -> None:
    state, server, fetcher = gh
    state.files = [gh_file(i) for i in range(150)]
    state.link_override = link.replace("PLACEHOLDER", str(server.make_url("/repos/acme/app")))
    with pytest.raises(FetchRefused):
        await fetcher.fetch(push())
    assert not any(p.startswith("/user") for p in state.paths())


async def test_gitlab_dot_file_name_is_not_fetched(gl: Any) -> None:
    state, _server, fetcher = gl
    state.files = [gl_diff("..", diff="", too_large=True)]
    (change,) = await fetcher.fetch(push("gitlab"))
    assert change.skipped == "not_fetched"
    assert not any("/files/" in p for p in state.paths())


async def test_github_new_branch_compares_with_default_branch(gh: Any) -> None:
    state, _server, fetcher = gh
    state.files = [gh_file(1)]
    await fetcher.fetch(push(before=ZERO_SHA))
    assert state.requests[0][0] == f"/repos/acme/app/compare/main...{B}"


async def test_github_first_push_reads_each_commit(gh: Any) -> None:
    state, _server, fetcher = gh
    c1, c2 = "c" * 40, "d" * 40
    state.commit_files = {c1: [gh_file(1)], c2: [gh_file(2)]}
    p = push(before=ZERO_SHA, after=c2, ref="refs/heads/main", commits=(c1, c2))
    changes = await fetcher.fetch(p)
    assert [(c.path, c.commit) for c in changes] == [("src/f1.py", c1), ("src/f2.py", c2)]


async def test_github_deleted_branch_is_skipped(gh: Any) -> None:
    state, _server, fetcher = gh
    assert await fetcher.fetch(push(after=ZERO_SHA)) == []
    assert state.requests == []


@pytest.mark.parametrize(
    "failure",
    [
        (429, {"Retry-After": "0.05"}),
        rate_limited_403(0.05),
        (403, {"Retry-After": "0.01"}),
        (502, {}),
        (503, {}),
    ],
)
async def test_github_rate_limits_and_5xx_are_retried(gh: Any, failure: Any) -> None:
    state, _server, fetcher = gh
    state.files = [gh_file(1)]
    state.failures = [failure, failure]
    started = time.monotonic()
    changes = await fetcher.fetch(push())
    assert [c.path for c in changes] == ["src/f1.py"]
    assert len(state.requests) == 3
    if failure[0] == 429:
        assert time.monotonic() - started >= 0.1  # Retry-After honoured twice


async def test_an_http_date_retry_after_is_honoured(gh: Any) -> None:
    """Retry-After as an HTTP date (RFC 9110), not only delta-seconds: the same one parser as
    the alert sinks."""
    state, _server, fetcher = gh
    state.files = [gh_file(1)]
    when = email.utils.formatdate(time.time() + 1.5, usegmt=True)  # whole seconds: 0.5-1.5 s
    state.failures = [(429, {"Retry-After": when})]
    started = time.monotonic()
    assert [c.path for c in await fetcher.fetch(push())] == ["src/f1.py"]
    assert time.monotonic() - started >= 0.2 and len(state.requests) == 2


async def test_github_gives_up_after_the_retries(gh: Any) -> None:
    state, _server, fetcher = gh
    state.failures = [(500, {})] * 10
    with pytest.raises(FetchError, match="gave up after 4 attempts: HTTP 500"):
        await fetcher.fetch(push())
    assert len(state.requests) == 4


@pytest.mark.parametrize("status", [401, 404, 422, 302])
async def test_github_client_errors_are_not_retried(gh: Any, status: int) -> None:
    state, _server, fetcher = gh
    state.failures = [(status, {"Location": "http://evil.example/"})]
    with pytest.raises(FetchRefused):
        await fetcher.fetch(push())
    assert len(state.requests) == 1


async def test_github_link_to_another_host_is_refused(gh: Any) -> None:
    state, _server, fetcher = gh
    state.files = [gh_file(i) for i in range(150)]
    state.link_override = "http://evil.example/repos/acme/app/compare/x?page=2"
    with pytest.raises(FetchRefused, match="outside the API base"):
        await fetcher.fetch(push())


async def test_rate_limit_wait_is_capped(gh: Any) -> None:
    state, _server, fetcher = gh
    state.files = [gh_file(1)]
    state.failures = [(429, {"Retry-After": "3600"})]
    started = time.monotonic()
    await fetcher.fetch(push())
    assert time.monotonic() - started < 2  # capped at max_delay_s=0.2


def gl_diff(path: str, diff: str = "@@ -0,0 +1 @@\n+y = 2\n", **kw: Any) -> dict[str, Any]:
    return {"new_path": path, "old_path": path, "diff": diff, "deleted_file": False, **kw}


async def test_gitlab_compare_and_raw_fallback(gl: Any) -> None:
    state, _server, fetcher = gl
    state.files = [
        gl_diff("a.py"), gl_diff("big.json", diff="", too_large=True),
        gl_diff("old.py", deleted_file=True),
    ]  # fmt: skip
    state.raw["big.json@" + B] = '{"k": 1}'
    changes = {c.path: c for c in await fetcher.fetch(push("gitlab"))}
    assert set(changes) == {"a.py", "big.json"}
    assert changes["big.json"].content == '{"k": 1}'
    path, query, headers = state.requests[0]
    assert path == "/api/v4/projects/42/repository/compare"
    assert f"from={A}" in query and f"to={B}" in query
    assert header(headers, "private-token") == "glpat-test"


async def test_gitlab_new_branch_and_first_push(gl: Any) -> None:
    state, _server, fetcher = gl
    state.files = [gl_diff("a.py")]
    await fetcher.fetch(push("gitlab", before=ZERO_SHA))
    assert "from=main" in state.requests[0][1]
    state.commit_files = {B: [gl_diff(f"f{i}.py") for i in range(250)]}
    changes = await fetcher.fetch(push("gitlab", before=ZERO_SHA, ref="refs/heads/main"))
    assert len(changes) == 250
    assert sum("/commits/" in p for p, _q, _h in state.requests) == 3  # 100 per page, Link headers


async def test_gitlab_rate_limit_then_success(gl: Any) -> None:
    state, _server, fetcher = gl
    state.files = [gl_diff("a.py")]
    state.failures = [(429, {"Retry-After": "0.01"}), (500, {})]
    assert [c.path for c in await fetcher.fetch(push("gitlab"))] == ["a.py"]


async def test_gitlab_commit_messages_beyond_the_payload_are_scanned(gl: Any) -> None:
    from core.keyformat import generate_key, hash_key
    from scanners.engine import Engine
    from scanners.verify import scan_changes

    state, _server, fetcher = gl
    key = generate_key("live").secret
    # GitLab's payload carries the newest 20 commits; the compare API lists all 25.
    shas = [f"{i:040x}" for i in range(25)]
    state.compare_commits = [{"id": sha, "message": f"commit {i}"} for i, sha in enumerate(shas)]
    state.compare_commits[0]["message"] = f"bootstrap\n\nKEY={key}"
    payload_messages = tuple((sha, f"commit {i}") for i, sha in enumerate(shas) if i >= 5)
    changes = await fetcher.fetch(push("gitlab", messages=payload_messages))
    messages = [c for c in changes if c.message is not None]
    assert [c.commit for c in messages] == shas[:5]
    scanned = scan_changes(Engine.default(), changes)
    assert [(commit, [c.key_hash for c in cands]) for commit, cands in scanned.found] == [
        (shas[0], [hash_key(key)])
    ]


def test_file_names_never_reach_logs_or_errors() -> None:
    from scanners.fetch.http import shown_path

    name = "QUtJQVREREdETVNBVVI2Nk5BTQ.txt"  # a base64-encoded AWS key id as a file name
    assert name not in shown_path(f"https://api.github.com/repos/o/r/contents/a/{name}?ref=x")
    assert name not in shown_path(
        f"https://gl.example/api/v4/projects/1/repository/files/{name}/raw"
    )
    assert (
        shown_path("https://api.github.com/repos/o/r/compare/a...b") == "/repos/o/r/compare/a...b"
    )

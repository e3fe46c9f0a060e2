"""Local fake GitHub and GitLab APIs (aiohttp servers on loopback) for the fetcher tests."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class HostState:
    """What the fake host serves and what it saw."""

    files: list[dict[str, Any]] = field(default_factory=list)  # compare / commit files
    commit_files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)  # "path@ref" -> content
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # next answers
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    link_override: str | None = None  # a forged Link URL
    compare_commits: list[dict[str, Any]] = field(default_factory=list)  # GitLab compare commits
    endless: set[str] = field(default_factory=set)  # "path@ref" served as a never-ending body
    streamed: int = 0  # bytes of endless bodies written before the client stopped reading

    def paths(self) -> list[str]:
        """Request paths with query, in order."""
        return [p for p, _q, _h in self.requests]


STATE = web.AppKey("state", HostState)


def _page(items: list[Any], request: web.Request, default: int) -> tuple[list[Any], bool]:
    per_page = int(request.query.get("per_page", default))
    page = int(request.query.get("page", 1))
    chunk = items[(page - 1) * per_page : page * per_page]
    return chunk, page * per_page < len(items)


def _link(request: web.Request, state: HostState) -> dict[str, str]:
    page = int(request.query.get("page", 1))
    url = request.url.update_query(page=page + 1)
    return {"Link": f'<{state.link_override or url}>; rel="next"'}


@web.middleware
async def _record_and_fail(request: web.Request, handler: Any) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests.append((request.path, request.query_string, dict(request.headers)))
    if state.failures:
        status, headers = state.failures.pop(0)
        return web.json_response({"message": "fake failure"}, status=status, headers=headers)
    resp: web.StreamResponse = await handler(request)
    return resp


def github_app(state: HostState) -> web.Application:
    """The GitHub REST endpoints the fetcher uses."""

    async def compare(request: web.Request) -> web.Response:
        chunk, more = _page(state.files, request, 300)
        headers = _link(request, state) if more else {}
        return web.json_response({"status": "ahead", "files": chunk}, headers=headers)

    async def commit(request: web.Request) -> web.Response:
        files = state.commit_files.get(request.match_info["sha"], [])
        chunk, more = _page(files, request, 300)
        headers = _link(request, state) if more else {}
        doc = {"sha": request.match_info["sha"], "files": chunk}
        return web.json_response(doc, headers=headers)

    async def contents(request: web.Request) -> web.StreamResponse:
        key = f"{request.match_info['path']}@{request.query.get('ref')}"
        if key in state.endless:
            return await _endless(request, state)
        if request.headers.get("Accept") != "application/vnd.github.raw" or key not in state.raw:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.Response(body=state.raw[key].encode())

    app = web.Application(middlewares=[_record_and_fail])
    app[STATE] = state
    app.router.add_get("/repos/{o}/{r}/compare/{basehead}", compare)
    app.router.add_get("/repos/{o}/{r}/commits/{sha}", commit)
    app.router.add_get("/repos/{o}/{r}/contents/{path:.+}", contents)
    return app


async def _endless(request: web.Request, state: HostState) -> web.StreamResponse:
    """A body that never ends (a 300 MB file, as far as the client can tell)."""
    resp = web.StreamResponse()
    await resp.prepare(request)
    chunk = b"x = 1  # generated\n" * 4096
    try:
        while state.streamed < 300 * 1024 * 1024:
            await resp.write(chunk)
            state.streamed += len(chunk)
    except (ConnectionError, RuntimeError):  # the client closed the connection: stop
        pass
    return resp


def gitlab_app(state: HostState) -> web.Application:
    """The GitLab v4 endpoints the fetcher uses."""

    async def compare(request: web.Request) -> web.Response:
        return web.json_response({"commits": state.compare_commits, "diffs": state.files})

    async def commit_diff(request: web.Request) -> web.Response:
        files = state.commit_files.get(request.match_info["sha"], [])
        chunk, more = _page(files, request, 20)
        return web.json_response(chunk, headers=_link(request, state) if more else {})

    async def raw(request: web.Request) -> web.Response:
        key = f"{request.match_info['path']}@{request.query.get('ref')}"
        if key not in state.raw:
            return web.json_response({"message": "404 File Not Found"}, status=404)
        return web.Response(body=state.raw[key].encode())

    app = web.Application(middlewares=[_record_and_fail])
    app[STATE] = state
    app.router.add_get("/api/v4/projects/{id}/repository/compare", compare)
    app.router.add_get("/api/v4/projects/{id}/repository/commits/{sha}/diff", commit_diff)
    app.router.add_get("/api/v4/projects/{id}/repository/files/{path}/raw", raw)
    return app


async def serve(app: web.Application) -> TestServer:
    """Start ``app`` on a free loopback port."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def rate_limited_403(reset_in: float) -> tuple[int, dict[str, str]]:
    """GitHub's primary rate-limit answer."""
    return 403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(time.time() + reset_in)}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header, case-insensitively."""
    return {k.lower(): v for k, v in headers.items()}.get(name.lower())

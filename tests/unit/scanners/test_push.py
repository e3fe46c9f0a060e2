"""The code.push message: GitHub and GitLab payloads decoded, bad ones refused with a reason."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from core.errors import InputError
from scanners.push import ZERO_SHA, decode_code_push, encode_code_push

GH = {
    "ref": "refs/heads/feature/x", "before": "a" * 40, "after": "b" * 40,
    "repository": {"full_name": "acme/app", "default_branch": "main",
                   "html_url": "https://github.com/acme/app"},
    "commits": [{"id": "b" * 40}, {"id": "not-a-sha"}, "junk"],
}  # fmt: skip
GL = {
    "ref": "refs/heads/main", "before": ZERO_SHA, "after": "c" * 40, "project_id": 7,
    "project": {"id": 7, "path_with_namespace": "grp/proj", "default_branch": "main"},
}  # fmt: skip


def test_github_push() -> None:
    raw = encode_code_push("github", {"X-GitHub-Delivery": "d1", "X-Hub-Signature-256": "s"}, GH)
    p = decode_code_push(raw)
    assert (p.repository, p.project, p.branch, p.default_branch) == (
        "acme/app", "acme/app", "feature/x", "main")  # fmt: skip
    assert p.commits == ("b" * 40,) and p.delivery == "d1"
    assert not p.created and not p.deleted
    assert "x-hub-signature-256" not in orjson.loads(raw)["headers"]


def test_github_deleted_and_gitlab_created() -> None:
    assert decode_code_push({"source": "github", "payload": {**GH, "deleted": True}}).deleted
    p = decode_code_push(
        {"source": "gitlab", "headers": {"X-Gitlab-Event-UUID": "u"}, "payload": GL}
    )
    assert (p.project, p.repository, p.created, p.delivery) == ("7", "grp/proj", True, "u")


@pytest.mark.parametrize(
    "message, reason",
    [
        (b"{", "bad_json"),
        (b"[]", "bad_push"),
        ({"source": "svn", "payload": {}}, "unknown_source"),
        ({"source": "github", "payload": []}, "bad_push"),
        ({"source": "github", "payload": {**GH, "after": 5}}, "bad_push"),
        ({"source": "github", "payload": {**GH, "before": "zz"}}, "bad_push"),
        (
            {"source": "github", "payload": {**GH, "repository": {"full_name": "../../etc"}}},
            "bad_push",
        ),
        ({"source": "github", "payload": {**GH, "ref": None}}, "bad_push"),
        ({"source": "gitlab", "payload": {**GL, "project_id": "7; DROP"}}, "bad_push"),
        ({"source": "gitlab", "payload": {**GL, "project_id": True}}, "bad_push"),
        ({"source": "github", "headers": "x", "payload": GH}, "bad_push"),
    ],
)
def test_bad_messages(message: Any, reason: str) -> None:
    with pytest.raises(InputError) as err:
        decode_code_push(message)
    assert err.value.reason == reason

"""``keywatch scan``: diffs, files, directories and stdin; exit codes; JSON lines and SARIF;
``--revoke`` applies the scanner's response; no full key in any output."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from core.keyformat import generate_key
from worker.commands.scan import command, looks_like_diff
from worker.keystore.store import KeyStore


@pytest.fixture
def env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    return {"KEYWATCH_DATABASE_URL": sqlite_url, "KEYWATCH_DATA_DIR": str(tmp_path / "d")}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(command, list(args), env=env, input=stdin)
    return result.exit_code, result.stdout, result.stderr


def diff_with(secret: str, path: str = "app/settings.py") -> str:
    return (
        f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1,2 +1,3 @@\n"
        f' import os\n+API_KEY = "{secret}"\n-OLD = 1\n'
    )


def test_diff_with_a_live_key_is_verified_not_revoked(env: dict[str, str], tmp_path: Path) -> None:
    store = KeyStore(env["KEYWATCH_DATABASE_URL"])
    live, rec = store.create("acme", "live")
    patch = tmp_path / "change.patch"
    patch.write_text(diff_with(live.secret))
    code, out, err = run(env, str(patch), "--json")
    assert code == 1, err
    [row] = [orjson.loads(line) for line in out.splitlines()]
    assert (row["status"], row["key_id"], row["path"], row["line"]) == (
        "active", rec.key_id, "app/settings.py", 2)  # fmt: skip
    assert row["revoked_now"] is False and live.secret not in out + err
    assert store.get(rec.key_id).status == "active"
    store.close()


def test_removed_lines_are_not_reported(env: dict[str, str], tmp_path: Path) -> None:
    store = KeyStore(env["KEYWATCH_DATABASE_URL"])
    live, _ = store.create("acme", "live")
    patch = tmp_path / "removal.diff"
    patch.write_text(diff_with("x").replace('+API_KEY = "x"', f'-API_KEY = "{live.secret}"'))
    assert run(env, str(patch))[:2] == (0, "no leaked keys found\n")
    store.close()


def test_revoke_applies_the_response(env: dict[str, str], tmp_path: Path, redis_url: str) -> None:
    store = KeyStore(env["KEYWATCH_DATABASE_URL"])
    live, rec = store.create("acme", "live")
    test, test_rec = store.create("acme", "test")
    f = tmp_path / ".env"
    f.write_text(f"LIVE={live.secret}\nTEST={test.secret}\n")
    env = {**env, "KEYWATCH_REDIS_URL": redis_url, "KEYWATCH_BROKER": "kafka://127.0.0.1:9"}
    code, out, err = run(env, str(f), "--revoke")
    assert code == 1, err
    assert store.get(rec.key_id).status == "revoked"
    assert store.get(test_rec.key_id).status == "active"
    assert "revoked" in out and live.secret not in out + err and test.secret not in out + err
    store.close()


def test_directories_stdin_and_unknown_keys(env: dict[str, str], tmp_path: Path) -> None:
    stranger = generate_key("live").secret
    tree = tmp_path / "repo"
    (tree / "src" / "deep").mkdir(parents=True)
    (tree / "src" / "deep" / "conf.json").write_text(f'{{"key": "{stranger}"}}')
    (tree / "blob.bin").write_bytes(b"\x00\x01" + stranger.encode())
    (tree / ".git").mkdir()
    (tree / ".git" / "config").write_text(stranger)
    code, out, _ = run(env, str(tree), "--json")
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert code == 0  # unknown keys are findings, not verified ones
    assert sorted((r["status"], Path(r["path"]).name) for r in rows) == [
        ("unknown", "blob.bin"), ("unknown", "conf.json")]  # fmt: skip
    code, out, _ = run(env, "-", "--json", stdin=f"token: {stranger}\n")
    assert code == 0 and orjson.loads(out)["status"] == "unknown"
    assert stranger not in out


def test_sarif(env: dict[str, str], tmp_path: Path) -> None:
    store = KeyStore(env["KEYWATCH_DATABASE_URL"])
    live, _ = store.create("acme", "live")
    f = tmp_path / "x.patch"
    f.write_text(diff_with(live.secret))
    code, out, _ = run(env, str(f), "--sarif")
    doc = orjson.loads(out)
    assert code == 1 and doc["version"] == "2.1.0"
    [result] = doc["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 2
    assert live.secret not in out
    store.close()


@pytest.mark.parametrize(
    "args", [["/no/such/path"], ["x", "--json", "--sarif"], ["x", "--rules", "/no/rules.toml"]]
)
def test_errors_exit_2_with_one_line(env: dict[str, str], args: list[str]) -> None:
    code, out, err = run(env, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("keywatch scan: error:")


@pytest.mark.parametrize(
    "text, is_diff",
    [
        ("diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", True),
        ("--- x.py\n+++ x.py\n@@ -1 +1 @@\n-a\n+b\n", True),
        ("@@ -0,0 +1 @@\n+KEY=1\n", True),
        ("KEY=1\n--- not a diff\n", False),
        ("plain text\n", False),
    ],
)
def test_diff_detection(text: str, is_diff: bool) -> None:
    assert looks_like_diff(text) is is_diff


def test_every_skip_is_reported_and_exits_2(env: dict[str, str], tmp_path: Path) -> None:
    store = KeyStore(env["KEYWATCH_DATABASE_URL"])
    live, _rec = store.create("acme", "live")
    tree = tmp_path / "repo"
    tree.mkdir()
    (tree / "big.txt").write_text("x" * 200 + live.secret)
    (tree / "dangling").symlink_to(tree / "nowhere")
    (tree / "ok.txt").write_text("nothing here\n")
    code, out, err = run(env, str(tree), "--json", "--max-file-size", "100")
    assert code == 2
    notes = [orjson.loads(line) for line in out.splitlines()]
    assert sorted((Path(n["path"]).name, n["kind"]) for n in notes) == [
        ("big.txt", "notification"), ("dangling", "notification")]  # fmt: skip
    assert "not scanned" in err and "big.txt" in err and "dangling" in err
    code, out, err = run(env, str(tree), "--sarif", "--max-file-size", "100")
    (invocation,) = orjson.loads(out)["runs"][0]["invocations"]
    assert code == 2 and invocation["executionSuccessful"] is False
    assert len(invocation["toolExecutionNotifications"]) == 2
    assert live.secret not in out + err
    store.close()


def test_key_in_a_file_path_is_found_never_printed(env: dict[str, str], tmp_path: Path) -> None:
    store = KeyStore(env["KEYWATCH_DATABASE_URL"])
    live, rec = store.create("acme", "live")
    (tmp_path / f"{live.secret}.md").write_text("hello\n")
    for fmt in ("--json", "--sarif", None):
        code, out, err = run(env, str(tmp_path), *([fmt] if fmt else []))
        assert code == 1, err
        assert live.secret not in out + err and live.secret[8:] not in out + err
    code, out, _ = run(env, str(tmp_path), "--json")
    (row,) = [orjson.loads(line) for line in out.splitlines()]
    assert (row["key_id"], row["location"], row["line"]) == (rec.key_id, "path", None)
    assert Path(row["path"]).name.startswith("sk_live_") and "…" in row["path"]
    store.close()


def test_table_says_revoke_only_when_revoked(env: dict[str, str], tmp_path: Path) -> None:
    store = KeyStore(env["KEYWATCH_DATABASE_URL"])
    live, rec = store.create("acme", "live")
    f = tmp_path / "x.py"
    f.write_text(f"KEY = '{live.secret}'\n")
    code, out, _ = run(env, str(f))
    assert code == 1 and "would revoke" in out and "revoked" not in out.replace("would revoke", "")
    assert store.get(rec.key_id).status == "active"
    store.close()


def test_stdin_sarif_names_stdin_and_huge_line_numbers_do_not_crash(env: dict[str, str]) -> None:
    stranger = generate_key("live").secret
    code, out, err = run(env, "-", "--sarif", stdin=f"a\ntoken: {stranger}\n")
    (result,) = orjson.loads(out)["runs"][0]["results"]
    assert code == 0, err
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "stdin"
    assert "None" not in result["message"]["text"] and "stdin:2" in result["message"]["text"]
    patch = f"@@ -1 +{2**70},2 @@\n+k = '{stranger}'\n+x\n"
    code, out, err = run(env, "-", "--json", stdin=patch)
    assert code == 0 and "Traceback" not in err, err
    assert orjson.loads(out)["line"] == 2**31 - 1

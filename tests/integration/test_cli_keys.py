"""``keywatch keys`` end to end on SQLite and PostgreSQL: JSON output, errors, no leaks."""

from __future__ import annotations

import orjson
import pytest

from core.keyformat import hash_key
from worker.cli import main


def test_create_show_list_revoke_rotate(run) -> None:  # type: ignore[no-untyped-def]
    code, out = run("keys", "create", "--account", "acme", "--env", "live", "--json")
    assert code == 0
    created = orjson.loads(out)
    assert set(created) == {"key", "key_id", "prefix", "environment", "account_id", "status"}
    assert created["key"].startswith("sk_live_") and created["status"] == "active"

    code, out = run("keys", "show", created["key_id"], "--json")
    shown = orjson.loads(out)
    assert shown["key_hash"] == hash_key(created["key"])
    assert created["key"] not in out
    for field in ("key_id", "status", "environment", "account_id", "revoked_reason"):
        assert field in shown

    code, out = run("keys", "revoke", created["key_id"], "--reason", "leaked", "--json")
    assert code == 0 and orjson.loads(out)["changed"] is True
    code, out = run("keys", "revoke", created["key_id"], "--reason", "leaked", "--json")
    assert orjson.loads(out)["changed"] is False
    assert orjson.loads(run("keys", "show", created["key_id"], "--json")[1])["revoked_reason"] == (
        "leaked"
    )

    _, out = run("keys", "create", "--account", "acme", "--env", "test", "--json")
    test_key = orjson.loads(out)
    code, out = run("keys", "rotate", test_key["key_id"], "--grace-days", "3", "--json")
    rotated = orjson.loads(out)
    assert code == 0 and rotated["rotated_from"] == test_key["key_id"]
    assert rotated["old_status"] == "deprecated" and rotated["key"].startswith("sk_test_")

    _, out = run("keys", "list", "--json")
    listed = {k["key_id"]: k["status"] for k in orjson.loads(out)}
    assert listed == {created["key_id"]: "revoked", test_key["key_id"]: "deprecated",
                      rotated["key_id"]: "active"}  # fmt: skip
    assert created["key"] not in out and rotated["key"] not in out


def test_user_errors_are_one_line_and_nonzero(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEYWATCH_DATABASE_URL", database_url)
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "show", "doesnotexist"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "keywatch: error: no key with id 'doesnotexist'"

    monkeypatch.setenv("KEYWATCH_WEB_PORT", "notaport")
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "list"])
    assert exit_info.value.code == 2
    assert "KEYWATCH_WEB_PORT" in capsys.readouterr().err
    assert "Traceback" not in capsys.readouterr().err


def test_link_a_kong_credential_and_consumer(run) -> None:  # type: ignore[no-untyped-def]
    _, out = run("keys", "create", "--account", "acme", "--env", "live", "--json")
    key_id = orjson.loads(out)["key_id"]
    uuid = "4D9C2A7E-3B1F-4E6A-9C8D-2F5B7A1E0C93"
    code, out = run("keys", "link", key_id, "--kong-credential", uuid, "--json")
    assert code == 0 and orjson.loads(out) == {
        "key_id": key_id, "gateway_id": uuid.lower(), "kind": "kong_credential", "changed": True,
    }  # fmt: skip
    code, out = run("keys", "link", key_id, "--kong-credential", uuid)
    assert code == 0 and out.startswith("already linked")
    code, out = run(
        "keys", "link", key_id, "--kong-consumer", "8a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    )
    assert code == 0 and out.startswith("linked: kong consumer")


@pytest.mark.parametrize(
    "args",
    [("nope", "--kong-credential", "x"), ("k", "--kong-credential", "a", "--kong-consumer", "b")],
)
def test_link_errors_are_one_line(database_url: str, monkeypatch, capsys, args) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KEYWATCH_DATABASE_URL", database_url)
    with pytest.raises(SystemExit) as exit_info:
        main(["keys", "link", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run keywatch, expect exit 2 and exactly one line on stderr; return that line."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_key_lifecycle_mistakes_are_refused(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEYWATCH_DATABASE_URL", database_url)
    monkeypatch.setenv("KEYWATCH_BROKER", "kafka://127.0.0.1:1")
    monkeypatch.delenv("KEYWATCH_REDIS_URL", raising=False)
    for days in ("-1", "0"):
        err = _fails(["keys", "create", "--account", "a", "--expires-days", days], capsys)
        assert "--expires-days must be positive" in err
    main(["keys", "create", "--account", "a", "--json"])
    key_id = orjson.loads(capsys.readouterr().out)["key_id"]
    main(["keys", "rotate", key_id, "--json"])
    successor = orjson.loads(capsys.readouterr().out)["key_id"]
    err = _fails(["keys", "rotate", key_id], capsys)
    assert "already rotated" in err and successor in err
    main(["keys", "list", "--json"])
    statuses = sorted(k["status"] for k in orjson.loads(capsys.readouterr().out))
    assert statuses == ["active", "deprecated"]  # one successor, not two

    main(["keys", "revoke", successor, "--reason", "test"])
    capsys.readouterr()
    err = _fails(["keys", "throttle", successor], capsys)
    assert err == f"keywatch: error: cannot throttle key {successor}: it is revoked"


def test_a_key_write_without_broker_queues_the_announcement_at_once(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    monkeypatch.setenv("KEYWATCH_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("KEYWATCH_BROKER", "kafka://127.0.0.1:1")
    monkeypatch.delenv("KEYWATCH_REDIS_URL", raising=False)
    main(["keys", "create", "--account", "a", "--json"])
    key_id = orjson.loads(capsys.readouterr().out)["key_id"]
    started = time.monotonic()
    main(["keys", "revoke", key_id, "--reason", "test"])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert out.strip() == f"{key_id}: revoked"
    assert err.strip().splitlines() == [
        "keywatch: note: no broker at kafka://127.0.0.1:1; the key-actions announcement is "
        "queued and a running worker sends it"
    ]
    assert "KafkaConnectionError" not in err
    assert elapsed < 2.5  # the announcer's own timeout is 3 s: it was not tried

"""``keywatch replay`` end to end on a small simulated log with one compromised key."""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from core.errors import ConfigError
from core.keyformat import NewKey
from detectors.model import Alert, Signal
from worker.commands.replay import command
from worker.keystore.store import KeyStore
from worker.replay import Stats, summary_lines
from worker.simulate import Simulation, simulate

SEVERITIES = {"low", "medium", "high", "critical"}
ACTIONS = {"log", "notify", "throttle", "revoke"}


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """4 keys x 7 days; one key is compromised (new country + off-hours + spike) at the end."""
    return simulate(4, 7, {"compromise": 1}, seed=1)


@pytest.fixture(scope="module")
def log_file(sim: Simulation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay") / "access.jsonl"
    path.write_bytes(b"".join(orjson.dumps(ev) + b"\n" for ev in sim.events()))
    return path


def replay(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Result:
    env = {"KEYWATCH_DATABASE_URL": "", "KEYWATCH_POLICY": "", **(env or {})}
    return CliRunner().invoke(command, list(args), input=stdin, env=env, catch_exceptions=True)


def alerts_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def baseline(log_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    out = tmp_path_factory.mktemp("out") / "alerts.jsonl"
    return replay(str(log_file), "--out", str(out)), out


def test_compromise_is_critical_revoke_in_contract_shape(
    baseline: tuple[Result, Path], sim: Simulation
) -> None:
    result, out = baseline
    assert result.exit_code == 0, result.output
    alerts = alerts_of(out)
    assert alerts
    for a in alerts:
        assert {"id", "kind", "key_id", "account_id", "ts", "detected_at", "severity", "action",
                "signals", "summary"} <= set(a)  # fmt: skip
        assert a["kind"] == "anomaly" and a["severity"] in SEVERITIES and a["action"] in ACTIONS
        assert a["ts"].endswith("Z") and a["detected_at"] >= a["ts"]
        assert all({"type", "severity", "evidence"} <= set(s) for s in a["signals"])
    victim = sim.labels[0].key_id
    assert {a["key_id"] for a in alerts} == {victim}  # no benign key alerted
    worst = [a for a in alerts if a["severity"] == "critical" and a["action"] == "revoke"]
    assert worst
    assert {"geo.new_country", "usage.spike"} <= {s["type"] for s in worst[-1]["signals"]}


def test_summary_printed(baseline: tuple[Result, Path]) -> None:
    result, out = baseline
    n = len(alerts_of(out))
    assert f"alerts: {n} (" in result.output and "per 1000 keys per day" in result.output
    assert "by severity:" in result.output and "critical" in result.output
    assert "by action:" in result.output and "revoke" in result.output
    assert "by type:" in result.output and "geo.new_country" in result.output
    assert "rejected: 0" in result.output and "keys: 4;" in result.output


def test_deterministic(baseline: tuple[Result, Path], log_file: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.jsonl"
    assert replay(str(log_file), "--out", str(again)).exit_code == 0
    assert again.read_bytes() == baseline[1].read_bytes()


def test_gzip_and_stdin_give_the_same_alerts(
    baseline: tuple[Result, Path], log_file: Path, tmp_path: Path
) -> None:
    gz = tmp_path / "access.jsonl.gz"
    gz.write_bytes(gzip.compress(log_file.read_bytes()))
    assert replay(str(gz), "--out", str(tmp_path / "gz.jsonl")).exit_code == 0
    assert (tmp_path / "gz.jsonl").read_bytes() == baseline[1].read_bytes()
    piped = replay("-", stdin=log_file.read_bytes())  # alerts on stdout, summary on stderr
    assert piped.exit_code == 0
    assert piped.stdout.encode() == baseline[1].read_bytes()
    assert "alerts:" in piped.stderr


def test_bad_lines_are_counted_not_fatal(
    baseline: tuple[Result, Path], log_file: Path, tmp_path: Path
) -> None:
    lines = log_file.read_bytes().splitlines(keepends=True)
    bad = [
        b"this is not json\n",
        b"{}\n",
        b'{"ts": "yesterday", "key_id": "abc", "ip": "198.51.100.7"}\n',
        b"\xff\xfe\n",
        b'[{"ts": 1794000000000, "key_id": "k1", "ip": "not an ip"}]\n',
        b'{"ts": 1794000000000, "key_hash": "' + b"a" * 64 + b'", "ip": "152.7.99.10"}\n',
    ]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"".join(lines[:100] + bad + lines[100:]))
    out = tmp_path / "mixed-alerts.jsonl"
    result = replay(str(mixed), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == baseline[1].read_bytes()
    assert f"rejected: {len(bad)} (" in result.output
    assert "unknown_key 1" in result.output  # a key hash without a key store to resolve it
    assert "invalid_json" in result.output


@pytest.fixture
def hashed(log_file: Path, sim: Simulation, tmp_path: Path) -> tuple[str, Path, NewKey, str]:
    """A key store holding one key, and the log with the victim's events carrying its hash."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    store = KeyStore(url)
    new, record = store.create("acme", "live")
    store.close()
    victim = sim.labels[0].key_id
    events = [orjson.loads(line) for line in log_file.read_bytes().splitlines()]
    for ev in events:
        if ev["key_id"] == victim:  # the gateway only knows the key's hash
            del ev["key_id"]
            ev["key_hash"] = new.key_hash
    mapped = tmp_path / "hashed.jsonl"
    mapped.write_bytes(b"".join(orjson.dumps(ev) + b"\n" for ev in events))
    return url, mapped, new, record.key_id


def status_of(url: str, key_id: str) -> str:
    store = KeyStore(url, create=False)
    try:
        return store.get(key_id).status
    finally:
        store.close()


def test_key_hashes_resolve_through_the_key_store(
    hashed: tuple[str, Path, NewKey, str], tmp_path: Path
) -> None:
    url, mapped, new, key_id = hashed
    out = tmp_path / "a.jsonl"
    result = replay(str(mapped), "--out", str(out), env={"KEYWATCH_DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    assert "rejected: 0" in result.output and "keys: 4;" in result.output
    alerts = alerts_of(out)
    assert alerts and {(a["key_id"], a["account_id"]) for a in alerts} == {(key_id, "acme")}
    assert any(a["action"] == "revoke" for a in alerts)
    assert new.secret not in out.read_text() and new.secret not in result.output
    assert status_of(url, key_id) == "active"  # acts on nothing without --apply


def test_apply_revokes_through_the_key_service(
    hashed: tuple[str, Path, NewKey, str], tmp_path: Path
) -> None:
    url, mapped, _, key_id = hashed
    env = {"KEYWATCH_DATABASE_URL": url, "KEYWATCH_BROKER": "kafka://127.0.0.1:1"}
    result = replay(str(mapped), "--out", str(tmp_path / "a.jsonl"), "--apply", env=env)
    assert result.exit_code == 0, result.output
    assert f"revoke {key_id}: applied" in result.stdout
    # no broker: said once, not waited for
    assert "no broker at kafka://127.0.0.1:1: key-actions announcements are queued" in result.stdout
    assert status_of(url, key_id) == "revoked"  # SQL first; Redis/Kafka follow via the outbox
    again = replay(str(mapped), "--out", str(tmp_path / "b.jsonl"), "--apply", env=env)
    assert f"revoke {key_id}: unchanged" in again.stdout  # idempotent


def test_report_has_one_section_per_alerted_key(
    baseline: tuple[Result, Path], log_file: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    result = replay(str(log_file), "--out", str(tmp_path / "a.jsonl"), "--report", str(page))
    assert result.exit_code == 0, result.output
    html = page.read_text()
    keys = {a["key_id"] for a in alerts_of(baseline[1])}
    assert html.count('<section class="key"') == len(keys)
    assert all(f'id="key-{k}"' in html for k in keys)
    assert "<svg" in html and "geo.new_country" in html


def test_bad_policy_file_is_a_config_error(log_file: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("this is = not [valid toml")
    result = replay(str(log_file), "--policy", str(policy))
    assert isinstance(result.exception, ConfigError)
    assert str(policy) in str(result.exception)


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = replay(str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2 and "cannot read" in result.output


def test_truncated_gzip_is_a_warning_and_a_reject(log_file: Path, tmp_path: Path) -> None:
    whole = gzip.compress(log_file.read_bytes())
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(whole[: len(whole) // 2])
    result = replay(str(broken), "--out", str(tmp_path / "a.jsonl"))
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "broken.jsonl.gz" in result.stderr
    assert "unreadable 1" in result.stdout
    events = int(result.stdout.split("events: ")[1].split(" ")[0])
    assert 0 < events < len(log_file.read_bytes().splitlines())  # what came before was kept


def test_policy_file_decides_the_action(
    baseline: tuple[Result, Path], log_file: Path, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("version = 1\ndry_run = true\n")  # enforce nothing: revoke becomes notify
    out = tmp_path / "a.jsonl"
    for env in ({}, {"KEYWATCH_POLICY": str(policy)}):
        args = [str(log_file), "--out", str(out)] + (["--policy", str(policy)] if not env else [])
        result = replay(*args, env=env)
        assert result.exit_code == 0, result.output
        alerts = alerts_of(out)
        same = [(a["key_id"], a["ts"], a["severity"]) for a in alerts_of(baseline[1])]
        assert [(a["key_id"], a["ts"], a["severity"]) for a in alerts] == same
        assert {a["action"] for a in alerts} <= {"log", "notify"}
        assert any(a["severity"] == "critical" for a in alerts)


def kong(ev: dict[str, Any]) -> dict[str, Any]:
    """A native event as Kong's kafka-log plugin would serialize it."""
    ms = round(datetime.fromisoformat(ev["ts"].replace("Z", "+00:00")).timestamp() * 1000)
    return {
        "started_at": ms,
        "client_ip": ev["ip"],
        "authenticated_entity": {"id": ev["key_id"]},
        "request": {
            "method": ev["method"],
            "uri": ev["path"],
            "headers": {"user-agent": ev["user_agent"]},
        },
        "response": {"status": ev["status"]},
    }


@pytest.mark.parametrize("fmt", ["auto", "kong"])
def test_kong_batches_give_the_same_alerts(
    baseline: tuple[Result, Path], log_file: Path, tmp_path: Path, fmt: str
) -> None:
    events = [kong(orjson.loads(line)) for line in log_file.read_bytes().splitlines()]
    batched = tmp_path / "kong.jsonl"
    batched.write_bytes(
        b"".join(orjson.dumps(events[i : i + 50]) + b"\n" for i in range(0, len(events), 50))
    )
    out = tmp_path / "a.jsonl"
    result = replay(str(batched), "--format", fmt, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"(kong {len(events)})" in result.output
    want = [(a["key_id"], a["ts"], a["severity"], a["action"]) for a in alerts_of(baseline[1])]
    assert [(a["key_id"], a["ts"], a["severity"], a["action"]) for a in alerts_of(out)] == want


def test_summary_rates_and_counts() -> None:
    stats = Stats(lines=12, events=10, keys=4, first_ts=0.0, last_ts=2 * 86400.0)
    stats.rejects.update({"invalid_json": 2, "unknown_key": 1})
    stats.formats.update({"native": 10})
    sig = [Signal("geo.new_country", "medium"), Signal("usage.spike", "high")]
    alerts = [
        Alert("a", "anomaly", "k1", None, 1.0, 1.0, "critical", "revoke", sig, "s"),
        Alert("b", "anomaly", "k2", None, 2.0, 2.0, "high", "throttle", sig[1:], "s"),
    ]
    lines = summary_lines(stats, alerts)
    assert lines[0] == (
        "messages read: 12; events: 10 (native 10); rejected: 3 (invalid_json 2, unknown_key 1)"
    )
    assert lines[1] == "keys: 4; key-days: 8.0"
    assert lines[2] == "alerts: 2 (250.00 per 1000 keys per day)"  # 2 / 8 key-days
    assert lines[3:] == [
        "by type: usage.spike 2, geo.new_country 1",
        "by severity: critical 1, high 1",
        "by action: revoke 1, throttle 1",
    ]

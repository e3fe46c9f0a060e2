"""Secrecy end to end: real issued keys planted in everything a `keywatch worker` reads, then every
output searched for them (full key, and the key's body without its prefix): none may appear.

Outputs searched: the process's own log at DEBUG, the alerts it raises, the re-keyed events,
keywatch.key-actions,
keywatch.dead-letter, the Slack/webhook/PagerDuty request bodies (including failed attempts),
/metrics and /health.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from core.keyformat import NewKey, generate_key
from tests.support.codehost import AFTER, FakeGitHub, post, push_body
from tests.support.codehost import SECRET as SCANNER_SECRET
from tests.support.events import anomaly_alert
from tests.support.faults import wait_for
from tests.support.kafka import collect, publish, topics_env
from tests.support.procs import keywatch_env, running
from tests.support.receiver import Receiver, serving
from worker.devstack import EmbeddedBroker
from worker.keystore.store import KeyStore

pytestmark = [pytest.mark.services, pytest.mark.slow]

SECRET = "whsec_" + base64.b64encode(b"secrecy-secret-secrecy-secret-12").decode()
ROUTING_KEY = "R0UTEsecrecy5f1b2c3d4e5f6a7b8c9d"
GITHUB_TOKEN = "ghp_" + "S3cr3tT0k3nF0rT3st1ng" * 2
GITLAB_TOKEN = "glpat-" + "G1tL4bS3cr3tT0k3n"
GITHUB_SECRET = "gh-webhook-secret-3f9a8b7c6d5e"
POLICY = """
[routing]
slack = "low"
webhook = "low"
pagerduty = "high"

[delivery]
max_attempts = 2
base_delay_s = 0.05
max_delay_s = 0.1
slack_min_interval_s = 0.0
"""


def planted(key: str) -> dict[str, Any]:
    """The places a key turns up in the wild: headers, query strings, free text, JSON values."""
    return {
        "request": {
            "url": f"https://api.example.com/v1/users?api_key={key}&page=2",
            "headers": {"apikey": key, "authorization": f"Bearer {key}", "x-api-key": key},
        },
        "note": f"customer pasted their key {key} into the ticket",
        "list": [key, {"nested": {"deeper": key}}],
    }


def alerts_with_keys(target: str, keys: list[NewKey]) -> list[Any]:
    """Alerts (good and bad) that carry keys in every field a sender might fill."""
    a, b = keys[0].secret, keys[1].secret
    revoke = anomaly_alert(target, "01JDSECRECY000000000000001") | {
        "summary": f"Key {target} seen as {a} and {b}",
        "signals": [{"type": "transport.key_in_query", "severity": "high", "evidence": planted(a)}],
    }
    notify = anomaly_alert(target, "01JDSECRECY000000000000002", "notify") | {
        "summary": f"notify {b}",
        "extra": planted(b),
    }
    bad_action = anomaly_alert(target, "01JDSECRECY000000000000003", f"explode {a}")
    unknown_key = anomaly_alert(a, "01JDSECRECY000000000000004")  # a key where an id belongs
    not_json = f"garbage {a} {b} {{".encode()
    return [revoke, notify, bad_action, unknown_key, not_json, orjson.dumps([planted(a)])]


async def test_no_full_key_in_any_output(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    store = KeyStore(sqlite_url)
    issued = [store.create("acme", env)[0] for env in ("live", "test")]
    _, target = store.create("acme", "live", contact="sec@acme.example")
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    topics = topics_env(topic_suffix)
    # the webhook always fails; PagerDuty redirects to another host, which must never be asked
    slack, hook, pd, trap = Receiver(), Receiver(default=(503, {})), Receiver(), Receiver()
    with serving(slack), serving(hook), serving(pd), serving(trap):
        pd.default = (307, {"location": trap.url})
        env = keywatch_env(
            broker.url, sqlite_url, tmp_path, redis_url, KEYWATCH_POLICY=str(policy),
            KEYWATCH_LOG_LEVEL="DEBUG", KEYWATCH_SLACK_WEBHOOK_URL=slack.url,
            KEYWATCH_WEBHOOK_URL=hook.url, KEYWATCH_WEBHOOK_SECRET=SECRET,
            KEYWATCH_PAGERDUTY_ROUTING_KEY=ROUTING_KEY, KEYWATCH_PAGERDUTY_URL=pd.url,
            KEYWATCH_GITHUB_TOKEN=GITHUB_TOKEN, KEYWATCH_GITLAB_TOKEN=GITLAB_TOKEN,
            KEYWATCH_GITHUB_WEBHOOK_SECRET=GITHUB_SECRET, **topics,
        )  # fmt: skip
        with running(["worker"], env, tmp_path / "worker.log") as proc:
            await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"],
                          alerts_with_keys(target.key_id, issued))  # fmt: skip
            lines = events_with_keys(issued, int(time.time() * 1000) - 60_000)
            await publish(broker.bootstrap, topics["KEYWATCH_TOPIC_ACCESS"],
                          [line.encode() for line in lines])  # fmt: skip
            await wait_for(lambda: store.get(target.key_id).status == "revoked", 30, "revoke")
            dead = await collect(broker.bootstrap, topics["KEYWATCH_TOPIC_DEAD_LETTER"],
                                 lambda m: _covers(m, EXPECTED_DEAD), 30)  # fmt: skip
            raised = await collect(broker.bootstrap, topics["KEYWATCH_TOPIC_ALERTS"],
                                   lambda m: bool(_raised(m)), 30)  # fmt: skip
            # three alerts reach PagerDuty (high and up); its 307 elsewhere is not followed
            await wait_for(
                lambda: len(slack.received) >= 4 and len(pd.received) >= 3, 10, "deliveries"
            )
            rekeyed = await collect(broker.bootstrap, topics["KEYWATCH_TOPIC_EVENTS_BY_KEY"],
                                    lambda m: False, 3)  # fmt: skip
            outputs = {
                "alerts raised": orjson.dumps(_raised(raised)).decode(),
                "events-by-key": repr(rekeyed),
                "dead-letter": orjson.dumps(dead).decode(),
                "key-actions": orjson.dumps(await collect(
                    broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"], bool, 10)).decode(),
                "metrics": proc.metrics(),
                "health": (await asyncio.to_thread(
                    httpx.get, f"http://127.0.0.1:{env['KEYWATCH_WEB_PORT']}/health")).text,
            }  # fmt: skip
            proc.stop()
            outputs["log"] = proc.log_path.read_text(errors="replace")
    sinks = (("slack", slack), ("webhook", hook), ("pagerduty", pd))
    outputs |= {f"{name} bodies": "\n".join(s.bodies()) for name, s in sinks}
    assert _covers(dead, EXPECTED_DEAD), Counter(m.get("reason") for m in dead)
    assert rekeyed  # the events went through the pipeline
    types = {s["type"] for a in _raised(raised) for s in a["signals"]}
    assert "transport.key_in_query" in types
    assert trap.received == []  # no redirect followed to a host nobody configured
    assert len(outputs["log"]) > 10_000  # DEBUG really was on
    for key in issued:
        body = key.secret[len(key.prefix) :]
        b64 = base64.b64encode(key.secret.encode()).decode()
        leaks = {
            n for n, text in outputs.items() if key.secret in text or body in text or b64 in text
        }
        assert not leaks, f"a full key ({key.prefix}…) appears in: {sorted(leaks)}"
    # configured secrets never leave either (the routing key goes to PagerDuty only)
    for secret in (SECRET, SECRET.removeprefix("whsec_"), GITHUB_TOKEN, GITLAB_TOKEN,
                   GITHUB_SECRET, ROUTING_KEY):  # fmt: skip
        where = {n for n, text in outputs.items() if secret in text and n != "pagerduty bodies"}
        assert not where, f"a configured secret appears in: {sorted(where)}"
    # the evidence stays useful: redacted stubs, not nothing
    assert any(f"{issued[0].prefix}" in b for b in slack.bodies())
    store.close()


# dead letters the planted input must produce (more come from deliveries of raised alerts)
# PagerDuty takes high and up: the three published alerts that decode (the worker's own
# key-in-query alert is hygiene, logged at low severity, so it reaches Slack and the webhook only)
EXPECTED_DEAD = Counter({"bad_alert": 3, "unknown_key": 1, "invalid_json": 2,
                         "delivery_failed:webhook": 4, "delivery_failed:pagerduty": 3})  # fmt: skip


def _covers(messages: list[Any], expected: Counter[str]) -> bool:
    got = Counter(m.get("reason") for m in messages if isinstance(m, dict))
    return all(got[reason] >= n for reason, n in expected.items())


def _raised(alerts: list[Any]) -> list[dict[str, Any]]:
    """The alerts the worker raised itself (not the ones the test published)."""
    return [a for a in alerts if isinstance(a, dict) and a.get("kind") == "anomaly"
            and not str(a.get("id", "")).startswith("01JDSECRECY")]  # fmt: skip


def kong_event(ts_ms: int, ip: str, **request: Any) -> dict[str, Any]:
    """A Kong log entry without an authenticated entity: the key is in the request."""
    req = {"method": "GET", "uri": "/v1/users", "headers": {"user-agent": "sdk/1.0"}} | request
    return {"started_at": ts_ms, "client_ip": ip, "request": req, "response": {"status": 200},
            "consumer": {"custom_id": "acme"}}  # fmt: skip


def events_with_keys(keys: list[NewKey], t0_ms: int) -> list[str]:
    """JSON lines carrying the keys in headers, query strings, paths, free text and bad input."""
    a, b = keys[0].secret, keys[1].secret
    basic = base64.b64encode(f"{a}:".encode()).decode()
    lines = [
        kong_event(t0_ms, "5.9.0.1", headers={"apikey": a, "user-agent": f"sdk {b}"}),
        kong_event(
            t0_ms + 1000,
            "5.9.0.1",
            uri=f"/v1/users?api_key={a}",
            url=f"https://api.example.com/v1/users?api_key={a}",
            querystring={"api_key": a},
        ),
        kong_event(t0_ms + 2000, "77.88.8.8", headers={"authorization": f"Basic {basic}"}),
        kong_event(
            t0_ms + 3000,
            "5.9.0.1",
            uri=f"/v1/keys/{b}/rotate",
            headers={"x-api-key": b, "x-note": f"my key is {a}"},
        ),
        {"ts": t0_ms + 4000, "key_id": a, "ip": "5.9.0.1", "path": f"/v1/x?key={b}"},
    ]
    encoded = [
        a.replace("_", "%5F"),
        b.replace("_", "\\u005f"),
        base64.b64encode(a.encode()).decode(),
    ]
    return [orjson.dumps(x).decode() for x in lines] + [
        f'{{"broken": "{a}" {b}',
        '{"broken encoded": "' + '" "'.join(encoded) + '"',  # dead-lettered as text: redacted
    ]


def test_replay_of_events_with_planted_keys_shows_no_key(sqlite_url: str, tmp_path: Path) -> None:
    store = KeyStore(sqlite_url)
    issued = [store.create("acme", env)[0] for env in ("live", "test")]
    logs = tmp_path / "access.jsonl"
    logs.write_text("\n".join(events_with_keys(issued, 1_795_316_645_000)) + "\n")
    out, report = tmp_path / "alerts.jsonl", tmp_path / "report.html"
    env = keywatch_env("kafka://127.0.0.1:9", sqlite_url, tmp_path, KEYWATCH_LOG_LEVEL="DEBUG")
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "replay", str(logs), "--out", str(out),
         "--report", str(report)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    outputs = {"stdout": done.stdout, "stderr": done.stderr, "alerts": out.read_text(),
               "report": report.read_text()}  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    alerts = [orjson.loads(line) for line in outputs["alerts"].splitlines()]
    assert "transport.key_in_query" in {s["type"] for a in alerts for s in a["signals"]}
    for key in issued:
        basic = base64.b64encode(f"{key.secret}:".encode()).decode()
        forms = (key.secret, key.secret[len(key.prefix) :], basic)
        leaks = {name for name, text in outputs.items() if any(f in text for f in forms)}
        assert not leaks, f"a full key ({key.prefix}…) appears in: {sorted(leaks)}"
    store.close()


def diff_with_keys(live: str, test: str, stranger: str) -> str:
    """A unified diff leaking keys: added lines, quoted, base64'd, in a URL, and a removed one."""
    blob = base64.b64encode(f"token={live}".encode()).decode()
    return (
        "diff --git a/.env b/.env\n--- a/.env\n+++ b/.env\n@@ -1,2 +1,5 @@\n DEBUG=1\n"
        f"-OLD_KEY={stranger}\n+PAYMENTS_KEY={live}\n+CONFIG_B64={blob}\n"
        f'+url = "https://api.example.com/v1?api_key={test}"\n'
        f"+curl -H 'Authorization: Bearer {stranger}'\n"
    )


@pytest.mark.parametrize("flags", [["--json"], ["--sarif"], ["--json", "--revoke"]])
def test_scan_output_shows_no_key(sqlite_url: str, tmp_path: Path, flags: list[str]) -> None:
    store = KeyStore(sqlite_url)
    live, test = store.create("acme", "live")[0], store.create("acme", "test")[0]
    stranger = generate_key("live")
    patch = tmp_path / "leak.diff"
    patch.write_text(diff_with_keys(live.secret, test.secret, stranger.secret))
    env = keywatch_env("kafka://127.0.0.1:9", sqlite_url, tmp_path, KEYWATCH_LOG_LEVEL="DEBUG")
    args = [sys.executable, "-m", "worker.cli", "scan", str(patch), *flags]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr[-2000:]  # something verified was found
    for key in (live, test, stranger):
        body = key.secret[len(key.prefix) :]
        where = [n for n, t in (("stdout", done.stdout), ("stderr", done.stderr)) if body in t]
        assert not where, f"a full key ({key.prefix}…) appears in: {where}"
    assert live.prefix in done.stdout  # findings carry the redacted form
    if "--revoke" in flags:
        assert store.find_by_hash(live.key_hash).status == "revoked"  # type: ignore[union-attr]
    store.close()


async def test_scanner_webhooks_and_diffs_with_keys_show_no_key(
    broker: EmbeddedBroker, topic_suffix: str, sqlite_url: str, redis_url: str,
    tmp_path: Path, fake_github: FakeGitHub,
) -> None:  # fmt: skip
    store = KeyStore(sqlite_url)
    live, test = store.create("acme", "live")[0], store.create("acme", "test")[0]
    stranger = generate_key("live")
    patch = "@@ -0,0 +1,2 @@\n" + f"+K1={live.secret}\n+K2={stranger.secret}\n"
    fake_github.files = [{"filename": ".env", "status": "added", "patch": patch}]
    push = orjson.loads(push_body())
    push["head_commit"] = {"id": AFTER, "message": f"oops, added {live.secret}"}
    push["commits"] = [
        {"id": AFTER, "message": f"rotate {test.secret}", "url": f"x?k={live.secret}"}
    ]
    body = orjson.dumps(push)
    topics = topics_env(topic_suffix)
    env = keywatch_env(
        broker.url, sqlite_url, tmp_path, redis_url, KEYWATCH_GITHUB_WEBHOOK_SECRET=SCANNER_SECRET,
        KEYWATCH_GITLAB_WEBHOOK_SECRET=GITHUB_SECRET, KEYWATCH_GITHUB_TOKEN=GITHUB_TOKEN,
        KEYWATCH_GITHUB_API_URL=fake_github.url,
        KEYWATCH_LOG_LEVEL="DEBUG", KEYWATCH_MAX_BODY_BYTES="65536", **topics,
    )  # fmt: skip
    port = env["KEYWATCH_SCANNER_WEB_PORT"]
    url = f"http://127.0.0.1:{port}/webhooks"
    with running(["scanner"], env, tmp_path / "scanner.log", "KEYWATCH_SCANNER_WEB_PORT") as proc:
        replies: list[object] = [await asyncio.to_thread(post, port, body, "push", "d-secrecy")]
        for path, content, headers in [
            (
                "github",
                body,
                {"X-GitHub-Event": "push", "X-Hub-Signature-256": "sha256=" + "0" * 64},
            ),
            ("github", f"not json {live.secret}".encode(), {"X-GitHub-Event": "push"}),
            ("gitlab", body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": live.secret}),
            ("github", b'{"pad": "' + live.secret.encode() * 2000 + b'"}', {}),
        ]:
            r = await asyncio.to_thread(httpx.post, f"{url}/{path}", content=content,
                                        headers=headers, timeout=10)  # fmt: skip
            replies.append(r.text)
        await wait_for(lambda: store.find_by_hash(live.key_hash).status == "revoked",  # type: ignore[union-attr]
                       40, "the scanner's revocation")  # fmt: skip
        leaks = await collect(
            broker.bootstrap, topics["KEYWATCH_TOPIC_LEAKS"], lambda m: len(m) >= 2, 20
        )
        outputs = {
            "leaks": orjson.dumps(leaks).decode(),
            "dead-letter": orjson.dumps(await collect(
                broker.bootstrap, topics["KEYWATCH_TOPIC_DEAD_LETTER"], bool, 2)).decode(),
            "key-actions": orjson.dumps(await collect(
                broker.bootstrap, topics["KEYWATCH_TOPIC_KEY_ACTIONS"], bool, 10)).decode(),
            "metrics": proc.metrics("KEYWATCH_SCANNER_WEB_PORT"),
            "replies": orjson.dumps(replies).decode(),
        }  # fmt: skip
        proc.stop()
        outputs["log"] = proc.log_path.read_text(errors="replace")
    assert len(leaks) >= 2 and len(outputs["log"]) > 5_000
    for key in (live, test, stranger):
        body_only = key.secret[len(key.prefix) :]
        where = {n for n, text in outputs.items() if body_only in text}
        assert not where, f"a full key ({key.prefix}…) appears in: {sorted(where)}"
    for secret in (SCANNER_SECRET, GITHUB_SECRET, GITHUB_TOKEN):
        assert not {n for n, text in outputs.items() if secret in text}
    store.close()

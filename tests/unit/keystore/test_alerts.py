"""Alerts and incidents in SQL (SQLite and PostgreSQL): recording, resolving, expiry, audit."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from core.errors import InvalidTransition
from worker.keystore.alerts import AlertNotFound, AlertStore, evidence_of
from worker.keystore.models import SchemaVersion
from worker.keystore.schema import CURRENT_VERSION, UPGRADES, ensure_schema
from worker.keystore.store import KeyStore, utcnow

IDLE = 3600.0


def _alert(alert_id: str, key_id: str, **extra: Any) -> dict[str, Any]:
    alert = {
        "id": alert_id, "kind": "anomaly", "key_id": key_id, "account_id": "acme",
        "ts": "2026-11-22T03:04:05.123Z", "detected_at": "2026-11-22T03:04:05.412Z",
        "severity": "medium", "action": "throttle",
        "signals": [{"type": "geo.new_country", "severity": "medium",
                     "evidence": {"country": "RU", "known": ["DE"], "ip": "203.0.113.7",
                                  "asn": 64500}}],
        "summary": "Key used from RU (new)",
    }  # fmt: skip
    alert.update(extra)
    return alert


@pytest.fixture
def stores(database_url: str) -> Any:
    store = KeyStore(database_url)
    yield store, AlertStore(store)
    store.close()


def test_recording_is_idempotent_and_groups_a_keys_alerts(stores: Any) -> None:
    store, alerts = stores
    _, rec = store.create("acme")
    assert alerts.record(_alert("A1", rec.key_id), IDLE) is True
    assert alerts.record(_alert("A1", rec.key_id), IDLE) is False  # at-least-once repeat
    spike = {"type": "usage.spike", "severity": "high",
             "evidence": {"observed_per_hour": 900, "baseline_per_hour": 20.0}}  # fmt: skip
    alerts.record(_alert("A2", rec.key_id, severity="high", signals=[spike]), IDLE)
    views = alerts.list_alerts(rec.key_id)
    assert [v.alert.id for v in views] == ["A2", "A1"]  # newest first (same time: by id)
    incident = alerts.get("A2").incident
    assert (incident.id, incident.alert_count, incident.severity) == ("A1", 2, "high")
    assert incident.evidence["countries"] == ["RU"]
    assert incident.evidence["ips"] == ["203.0.113.7"]
    assert set(incident.evidence["networks"]) == {"203.0.113.0/24", "AS64500"}
    d = alerts.get("A1").to_dict()
    assert {k: d[k] for k in ("id", "key_id", "severity", "action", "status")} == {
        "id": "A1", "key_id": rec.key_id, "severity": "medium", "action": "throttle",
        "status": "open",
    }  # fmt: skip
    assert d["ts"] == "2026-11-22T03:04:05.123Z"
    assert d["signals"][0]["type"] == "geo.new_country"


def test_a_key_in_an_alert_is_never_stored(stores: Any) -> None:
    store, alerts = stores
    new, rec = store.create("acme")
    alerts.record(_alert("A1", rec.key_id, summary=f"seen {new.secret}"), IDLE)
    assert new.secret not in str(alerts.get("A1").to_dict())


def test_benign_resolution_audits_queues_feedback_and_sees_its_throttle(stores: Any) -> None:
    store, alerts = stores
    _, rec = store.create("acme")
    alerts.record(_alert("A1", rec.key_id), IDLE)
    store.throttle(rec.key_id, 600, "anomaly", actor="keywatch-response", alert_id="A1")
    res = alerts.resolve("A1", "benign", "cli:alice", "my trip to Riga")
    assert (res.changed, res.previous, res.throttled_by_incident) == (True, "open", True)
    assert res.signals[0]["evidence"]["country"] == "RU"
    again = alerts.resolve("A1", "benign", "cli:alice")
    assert again.changed is False
    audit = [a for a in store.audit(rec.key_id) if a.action in ("benign", "compromised")]
    assert [(a.action, a.actor, a.reason) for a in audit] == [
        ("benign", "cli:alice", "my trip to Riga")
    ]
    outbox = alerts.pending_feedback()
    assert [(e.key_id, e.payload["verdict"], e.payload["alert_id"]) for e in outbox] == [
        (rec.key_id, "benign", "A1")
    ]
    alerts.feedback_done(outbox[0].id)
    assert alerts.pending_feedback() == []
    view = alerts.get("A1")
    assert (view.incident.status, view.incident.resolved_by) == ("benign", "cli:alice")
    assert alerts.list_alerts(open_only=True) == []


def test_a_throttle_from_another_incident_is_not_ours(stores: Any) -> None:
    store, alerts = stores
    _, rec = store.create("acme")
    alerts.record(_alert("A1", rec.key_id), IDLE)
    store.throttle(rec.key_id, 600, "manual", actor="cli")
    assert alerts.resolve("A1", "benign", "cli:bob").throttled_by_incident is False


def test_compromised_is_final_and_benign_can_become_compromised(stores: Any) -> None:
    store, alerts = stores
    _, rec = store.create("acme")
    alerts.record(_alert("A1", rec.key_id), IDLE)
    alerts.resolve("A1", "benign", "cli:alice")
    res = alerts.resolve("A1", "compromised", "cli:carol", "the IP is a known botnet")
    assert (res.changed, res.previous) == (True, "benign")
    with pytest.raises(InvalidTransition):
        alerts.resolve("A1", "benign", "cli:alice")
    assert alerts.get("A1").incident.status == "compromised"
    with pytest.raises(AlertNotFound):
        alerts.resolve("NOPE", "benign", "cli:alice")


def test_idle_incidents_expire_and_a_new_alert_opens_a_new_one(stores: Any) -> None:
    store, alerts = stores
    _, rec = store.create("acme")
    then = utcnow() - timedelta(hours=3)
    alerts.record(_alert("A1", rec.key_id), IDLE, now=then)
    assert alerts.expire_idle(IDLE) == 1
    assert alerts.get("A1").incident.status == "expired"
    alerts.record(_alert("A2", rec.key_id), IDLE)
    assert alerts.get("A2").incident.id == "A2"
    assert alerts.expire_idle(IDLE) == 0


def test_pagerduty_open_incidents_persist(stores: Any, database_url: str) -> None:
    _, alerts = stores
    assert alerts.pagerduty_claim("k1", "keywatch/k1/A1") == "keywatch/k1/A1"
    assert alerts.pagerduty_claim("k1", "keywatch/k1/A2") == "keywatch/k1/A1"
    reopened = AlertStore(KeyStore(database_url))
    assert reopened.pagerduty_open() == {"k1": "keywatch/k1/A1"}
    reopened.pagerduty_release("k1")
    assert alerts.pagerduty_open() == {}
    reopened.store.close()


def test_upgrade_step_is_idempotent_from_version_1(database_url: str) -> None:
    store = KeyStore(database_url)
    with store.engine.begin() as conn:  # a version-1 database that already has the new tables
        conn.execute(sa.delete(SchemaVersion))
        conn.execute(sa.insert(SchemaVersion).values(version=1, applied_at=utcnow()))
    assert ensure_schema(store.engine) == CURRENT_VERSION
    with store.engine.begin() as conn:
        for step in UPGRADES:  # and again: every step skips what exists
            step(conn)
        assert sa.inspect(conn).has_table("kw_incidents")
    store.close()


def test_evidence_of_impossible_travel_names_where_the_key_went() -> None:
    signal = {
        "type": "geo.impossible_travel",
        "evidence": {
            "from": {"place": "DE/Berlin"},
            "to": {"place": "SG/Singapore", "ip": "2001:db8::1"},
        },
    }
    assert evidence_of([signal]) == {
        "ips": ["2001:db8::1"], "networks": ["2001:db8::/48"], "countries": ["SG"],
    }  # fmt: skip


@pytest.mark.parametrize(
    "ip, networks",
    [("203.0.113.7", ["203.0.113.0/24"]), ("2001:db8::1", ["2001:db8::/48"]), ("gw-7", [])],
)
def test_evidence_of_names_an_address_network_and_no_network_for_a_non_address(
    ip: str, networks: list[str]
) -> None:
    signal = {"type": "auth.revoked_in_use", "evidence": {"ip": ip}}
    assert evidence_of([signal]) == {"ips": [ip], "networks": networks, "countries": []}

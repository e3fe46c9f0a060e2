"""Incidents: cooldown, counts, escalation and deterministic alert ids."""

from __future__ import annotations

from ulid import ULID

from detectors import incidents
from detectors.model import Signal
from detectors.policy import Decision
from detectors.profile import KeyProfile
from tests.unit.detectors.conftest import HOUR, T0

SPIKE = Signal(
    "usage.spike", "high", {"observed_per_hour": 900, "baseline_per_hour": 30.0, "ratio": 30.0}
)
NEW = Signal("geo.new_country", "medium", {"country": "RU", "known": ["GB"]})
COOL = 6 * HOUR


def test_repeated_evidence_bumps_one_incident() -> None:
    prof = KeyProfile()
    first = incidents.record(prof, [SPIKE], T0, COOL)
    again = incidents.record(prof, [SPIKE], T0 + 5 * HOUR, COOL)
    later = incidents.record(prof, [SPIKE], T0 + 10 * HOUR, COOL)  # within 6 h of the last
    assert first.opened == [SPIKE] and again.opened == [] and later.opened == []
    assert prof.incidents["usage.spike"].count == 3


def test_cooldown_expiry_opens_a_new_incident() -> None:
    prof = KeyProfile()
    incidents.record(prof, [SPIKE], T0, COOL)
    assert incidents.record(prof, [SPIKE], T0 + COOL + 1, COOL).opened == [SPIKE]


def test_open_signals_keep_older_incidents_first() -> None:
    prof = KeyProfile()
    incidents.record(prof, [NEW], T0, COOL)
    update = incidents.record(prof, [SPIKE], T0 + 60, COOL)
    assert [s.type for s in update.open_signals] == ["geo.new_country", "usage.spike"]
    assert update.open_signals[0].evidence["summary"] == "from RU (new)"


def test_alert_only_on_new_type_or_escalation() -> None:
    prof = KeyProfile()
    up = incidents.record(prof, [NEW], T0, COOL)
    notify = incidents.rank(Decision("medium", "notify"))
    assert incidents.should_alert(prof, up, notify)
    incidents.mark_alerted(prof, "id1", notify)
    up = incidents.record(prof, [NEW], T0 + 1, COOL)
    assert not incidents.should_alert(prof, up, notify)
    assert incidents.should_alert(prof, up, incidents.rank(Decision("critical", "revoke")))


def test_alert_id_is_a_deterministic_ulid_at_event_time() -> None:
    a = incidents.alert_id("k1", T0 + 0.123, "usage.spike@1", 34)
    assert a == incidents.alert_id("k1", T0 + 0.123, "usage.spike@1", 34)
    assert a != incidents.alert_id("k1", T0 + 0.123, "usage.spike@1", 44)
    assert a != incidents.alert_id("k2", T0 + 0.123, "usage.spike@1", 34)
    assert ULID.from_str(a).milliseconds == round((T0 + 0.123) * 1000)

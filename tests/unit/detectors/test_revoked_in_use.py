"""``auth.revoked_in_use``: a key the gateway refuses as revoked or expired is still tried."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from detectors import incidents, revoked_in_use
from detectors.analyzer import Analyzer
from detectors.config import DetectorConfig, EvalContext
from detectors.model import AccessEvent, KeyContext, Signal
from detectors.profile import KeyProfile
from detectors.registry import PER_EVENT_TYPES, detector_types
from detectors.summary import phrase
from geoip.resolver import GeoResolver
from tests.unit.detectors.conftest import DAY, LONDON, MOSCOW, MOSCOW6, PARIS, SYDNEY, T0

NOW = T0 + 7 * DAY


@pytest.mark.parametrize(
    "auth, ip, fires, network",
    [
        ("revoked", "203.0.113.7", True, "203.0.113.0/24"),
        ("expired", "2001:db8:1:2::5", True, "2001:db8:1::/48"),
        ("revoked", "not-an-ip", True, "not-an-ip"),
        ("ok", "203.0.113.7", False, ""),
        ("", "203.0.113.7", False, ""),
        ("throttled", "203.0.113.7", False, ""),  # a live key over its limit: not a dead key
        ("rate_limited", "203.0.113.7", False, ""),
        ("invalid", "203.0.113.7", False, ""),  # no key known: the per-network alert's job
        ("missing", "203.0.113.7", False, ""),
    ],
)
def test_revoked_in_use(auth: str, ip: str, fires: bool, network: str) -> None:
    ev = AccessEvent(NOW, "k1", ip, "GET", "/v1/x?api_key=REDACTED", 401, auth=auth)
    out = revoked_in_use.evaluate(ev, KeyProfile(), EvalContext(DetectorConfig()))
    assert bool(out) == fires
    if out:
        (sig,) = out
        assert (sig.type, sig.severity) == ("auth.revoked_in_use", "medium")
        assert sig.evidence["auth"] == auth
        assert sig.evidence["network"] == network
        assert sig.evidence["path"] == "/v1/x"  # never the query string


def test_registered_per_event_and_summarised() -> None:
    assert "auth.revoked_in_use" in detector_types()
    assert "auth.revoked_in_use" in PER_EVENT_TYPES  # never skipped as a repeated context
    text = phrase(Signal("auth.revoked_in_use", "medium", {"auth": "revoked", "network": "n"}))
    assert "revoked" in text and "n" in text


@pytest.mark.parametrize(
    "ips, severities, networks",
    [
        # A forgotten deployment: one network, retrying. One incident, one notify alert.
        ([MOSCOW] * 5, ["medium"], 1),
        ([MOSCOW, MOSCOW6, MOSCOW], ["medium"], 1),  # a dual-stack host: two networks
        # The secret is spread: a third network pages (high); later ones add to the incident.
        ([MOSCOW, MOSCOW, SYDNEY, PARIS, MOSCOW6], ["medium", "high"], 3),
    ],
)
def test_a_revoked_key_tried_from_more_networks_rises_to_high(
    geo: GeoResolver,
    trained: Callable[[], KeyProfile],
    ips: list[str],
    severities: list[str],
    networks: int,
) -> None:
    """Repeated attempts are one incident; its severity rises with the networks trying."""
    events = [AccessEvent(NOW + i, "k1", ip, "GET", "/v1/x", 401, auth="revoked")
              for i, ip in enumerate(ips)]  # fmt: skip
    prof, alerts = Analyzer(geo).analyze(
        KeyContext("k1", status="revoked"), trained(), events, NOW + 10
    )
    assert [a.severity for a in alerts] == severities
    assert alerts[0].action == "notify" and alerts[0].kind == "anomaly"
    assert all([s.type for s in a.signals] == ["auth.revoked_in_use"] for a in alerts)
    assert alerts[0].signals[0].evidence["network"] == "5.255.255.0/24"
    assert alerts[-1].signals[-1].evidence["networks"] == networks
    assert prof.incidents["auth.revoked_in_use"].count == len(ips)
    again = KeyProfile.from_bytes(prof.to_bytes())  # the sketch survives a checkpoint
    assert again.incidents["auth.revoked_in_use"].nets == prof.incidents["auth.revoked_in_use"].nets


def test_an_old_incident_does_not_count_its_networks(trained: Callable[[], KeyProfile]) -> None:
    """After the cooldown a new incident starts from the one network trying now."""
    prof = trained()
    ctx = EvalContext(DetectorConfig())
    for i, ip in enumerate(("203.0.113.7", "198.51.100.7", "192.0.2.7")):
        ev = AccessEvent(NOW + i, "k1", ip, auth="revoked")
        assert revoked_in_use.evaluate(ev, prof, ctx)
        incidents.record(prof, revoked_in_use.evaluate(ev, prof, ctx), ev.ts, 6 * 3600.0)
        revoked_in_use.remember(prof, ev)
    late = AccessEvent(NOW + 7 * 3600.0, "k1", "203.0.113.9", auth="revoked")
    (sig,) = revoked_in_use.evaluate(late, prof, ctx)
    assert (sig.severity, sig.evidence["networks"]) == ("medium", 1)


def test_refused_requests_are_not_profiled(
    geo: GeoResolver, trained: Callable[[], KeyProfile]
) -> None:
    """A dead key's callers are not its usage: no new country, no volume, no place learned."""
    before = trained()
    verdicts = ["revoked", "expired", "invalid", "missing"] * 50
    refused = [AccessEvent(NOW + i, "k1", MOSCOW, auth=a) for i, a in enumerate(verdicts)]
    prof, alerts = Analyzer(geo).analyze(KeyContext("k1"), trained(), refused, NOW + 300)
    assert {s.type for a in alerts for s in a.signals} == {"auth.revoked_in_use"}
    prof.incidents.clear()
    assert prof.to_bytes() == before.to_bytes()
    # the same requests served would have raised location signals on this office key
    served = [AccessEvent(e.ts, "k1", e.ip, auth="ok") for e in refused]
    _, alerts = Analyzer(geo).analyze(KeyContext("k1"), trained(), served, NOW + 300)
    assert any(s.type == "geo.new_country" for a in alerts for s in a.signals)


def test_served_events_around_a_refused_one_are_unaffected(
    geo: GeoResolver, trained: Callable[[], KeyProfile]
) -> None:
    """A refused event between served ones changes nothing in how the served ones are profiled."""
    served = [AccessEvent(NOW + i, "k1", LONDON) for i in range(20)]
    mixed = [*served[:10], AccessEvent(NOW + 10.5, "k1", SYDNEY, auth="revoked"), *served[10:]]
    plain, _ = Analyzer(geo).analyze(KeyContext("k1"), trained(), served, NOW + 30)
    with_refused, _ = Analyzer(geo).analyze(KeyContext("k1"), trained(), mixed, NOW + 30)
    assert with_refused.incidents.pop("auth.revoked_in_use").count == 1
    assert set(with_refused.incidents) == set(plain.incidents)
    for t, inc in plain.incidents.items():  # the served events' own incidents are unchanged
        got = with_refused.incidents[t]
        assert (got.opened, got.last_seen, got.count) == (inc.opened, inc.last_seen, inc.count)
    with_refused.incidents.clear()
    plain.incidents.clear()
    assert with_refused.to_bytes() == plain.to_bytes()

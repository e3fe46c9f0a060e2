"""Network-level signals: network class (network.new_class, class-level network.new_asn) and
distinct client networks per hour (network.fanout), with the benign shapes they must spare."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from detectors import network_fanout, new_asn, new_class
from detectors.analyzer import Analyzer
from detectors.config import DetectorConfig, EvalContext
from detectors.model import AccessEvent, KeyContext
from detectors.profile import ESTABLISHED, KeyProfile
from geoip.resolver import GeoResolver
from geoip.testdb import write_city_db
from tests.unit.detectors.conftest import (
    CITY,
    DAY,
    HOME_ISP_16,
    HOUR,
    LONDON,
    LONDON_AWS,
    LONDON_DO,
    LONDON_NEW_ASN,
    LONDON_VPN,
    MOSCOW,
    T0,
)

MONDAY = T0 + 7 * DAY
Factory = Callable[[], KeyProfile]
LIVE = KeyContext("k1", "acme")


def run(fn, geo: GeoResolver, prof: KeyProfile, ip: str, late: bool = False):  # type: ignore[no-untyped-def]
    ev = AccessEvent(MONDAY + 10 * HOUR, "k1", ip)
    return fn(ev, prof, EvalContext(DetectorConfig()).set(ev.ts, geo.lookup(ip), late))


def shape(prof: KeyProfile, setup: str) -> KeyProfile:
    """Turn the trained office key into another benign shape (what it has established)."""
    if setup in ("cloud_key", "ci_fleet"):  # a service or CI fleet that runs in clouds
        prof.learn_feedback("", {"net_class": "hosting"}, MONDAY)
        prof.asns[16509] = [500, 0, 3]
    if setup == "ci_fleet":  # ... on several networks
        prof.asns[14618] = [500, 0, 3]
    if setup == "multi_isp":  # a fleet of offices on three ISPs
        prof.asns[200] = [500, 0, 3]
        prof.asns[400] = [500, 0, 3]
    if setup == "learning":
        prof.learned = False
    if setup == "no_class_history":  # learned before an ASN database was configured
        prof.known = bytearray(len(prof.known))
    if setup == "feedback":
        prof.learn_feedback("network.new_class", {"net_class": "hosting"}, MONDAY)
    return prof


@pytest.mark.parametrize(
    "ip, setup, expected",
    [
        (LONDON_AWS, "office", "hosting"),  # an office key suddenly from a cloud VM
        (LONDON_VPN, "office", "vpn"),
        (LONDON, "office", None),  # its own ISP
        (LONDON_NEW_ASN, "office", None),  # another ISP: people, new_asn's case
        (MOSCOW, "traveller", None),  # a hotel's ISP abroad: no rented class
        (LONDON_DO, "cloud_key", None),  # a cloud service on another cloud: judged at class level
        (LONDON_AWS, "ci_fleet", None),
        (LONDON_VPN, "cloud_key", "vpn"),  # a class it never used
        (LONDON_AWS, "learning", None),
        (LONDON_AWS, "no_class_history", None),
        (LONDON_AWS, "feedback", None),  # resolved as benign: hosting is normal for it now
    ],
)
def test_new_class(
    geo: GeoResolver, trained: Factory, ip: str, setup: str, expected: str | None
) -> None:
    out = run(new_class.evaluate, geo, shape(trained(), setup), ip)
    assert [s.evidence["net_class"] for s in out] == ([expected] if expected else [])
    if out:
        assert out[0].severity == "low" and "isp" in out[0].evidence["known_classes"]


@pytest.mark.parametrize(
    "ip, setup, fires",
    [
        (LONDON_DO, "office", True),  # a cloud ASN is a new network for an office key
        (LONDON_DO, "cloud_key", False),  # ... not for a key that runs in clouds
        (LONDON_NEW_ASN, "office", True),  # a new ISP for a one-network key
        (LONDON_NEW_ASN, "multi_isp", False),  # a fleet on 3+ ISPs: one more is not news
        (LONDON_VPN, "multi_isp", True),  # ... but a class it never used is
    ],
)
def test_new_asn_is_judged_at_class_level(
    geo: GeoResolver, trained: Factory, ip: str, setup: str, fires: bool
) -> None:
    assert bool(run(new_asn.evaluate, geo, shape(trained(), setup), ip)) == fires


IP = f"{HOME_ISP_16}.200.5"  # the home ISP, home city: only the count of networks is unusual


def fill(prof: KeyProfile, n: int, peak: float, with_own: bool = False) -> KeyProfile:
    nets = [f"{HOME_ISP_16}.{i}.0/24" for i in range(n - with_own)]
    if with_own:
        nets.append(f"{HOME_ISP_16}.200.0/24")
    for net in nets:
        prof.count_network(net)
    assert n > 20 or prof.net_bits == n  # no collision among the first 20 in the sketch
    prof.net_peak = peak
    return prof


@pytest.mark.parametrize(
    "before, peak, flags, expected",
    [
        (7, 1.0, "", "low"),  # an office key (1 network an hour) now from 8 within the hour
        (6, 1.0, "", None),  # 7: below the floor of 8
        (7, 1.0, "own", None),  # this event's network is among the 7 counted: still 7
        (15, 1.0, "", "medium"),  # twice the limit: a shared or distributed key
        (2, 2.0, "", None),  # a traveller: laptop, phone, hotel
        # A multi-region service (6 an hour): 18 is 3x its maximum (the sketch estimates 17
        # networks set as 18: it assumes a collision or so happened).
        (16, 6.0, "", "low"),
        (15, 6.0, "", None),
        (47, 20.0, "", None),  # a CI fleet (20 an hour): judged at its own level
        (15, 1.0, "learning", None),
        (15, 1.0, "late", None),
        (15, 1.0, "feedback", None),  # resolved as benign at 16 networks: its normal now
    ],
)
def test_network_fanout(
    geo: GeoResolver, trained: Factory, before: int, peak: float, flags: str, expected: str | None
) -> None:
    prof = fill(trained(), before, peak, with_own=flags == "own")
    prof.learned = flags != "learning"
    if flags == "feedback":
        assert prof.learn_feedback("network.fanout", {"distinct_networks": 16}, MONDAY)
    out = run(network_fanout.evaluate, geo, prof, IP, late=flags == "late")
    assert [s.severity for s in out] == ([expected] if expected else [])
    if out:
        ev = out[0].evidence
        assert ev["network"] == f"{HOME_ISP_16}.200.0/24" and ev["usual_max"] == peak
        assert before + 1 <= ev["distinct_networks"] <= before + 2 and ev["limit"] >= 8


def many_networks(per_net: int, spacing: float) -> list[AccessEvent]:
    """20 client networks of the key's own ISP and city within one working hour."""
    start = MONDAY + 10 * HOUR
    return [
        AccessEvent(start + (n * per_net + i) * spacing, "k1", f"{HOME_ISP_16}.{n}.7")
        for n in range(20)
        for i in range(per_net)
    ]


def test_fanout_alone_is_evidence_not_compromise(geo: GeoResolver, trained: Factory) -> None:
    """An office key used from 20 networks in its own city at its usual rate (a snow day)."""
    _, alerts = Analyzer(geo).analyze(LIVE, trained(), many_networks(1, 120.0), MONDAY + DAY)
    assert alerts and all(a.action in ("log", "notify") for a in alerts)
    assert any(s.type == "network.fanout" for a in alerts for s in a.signals)


def test_fanout_with_volume_is_throttled_not_revoked(geo: GeoResolver, trained: Factory) -> None:
    """The same 20 networks hammering the key: shared or stolen and abused, or gone viral."""
    _, alerts = Analyzer(geo).analyze(LIVE, trained(), many_networks(40, 0.5), MONDAY + DAY)
    throttle = [a for a in alerts if a.action == "throttle"]
    assert throttle and {"network.fanout", "usage.spike"} <= {s.type for s in throttle[0].signals}
    assert all(a.action != "revoke" for a in alerts)


def test_fanout_maximum_is_learned_per_hour_but_not_from_an_incident(
    geo: GeoResolver, trained: Factory
) -> None:
    prof = trained()
    assert prof.net_peak == pytest.approx(1.0, abs=0.05)  # the office: one network an hour
    analyzer = Analyzer(geo)
    prof, _ = analyzer.analyze(LIVE, prof, many_networks(1, 120.0), MONDAY + DAY)
    assert "network.fanout" in prof.incidents
    nxt = [AccessEvent(MONDAY + 12 * HOUR, "k1", LONDON)]  # the hour closes
    prof, _ = analyzer.analyze(LIVE, prof, nxt, MONDAY + DAY)
    assert prof.net_peak < 2.0  # the suspicious hour did not become the key's normal
    prof.incidents.clear()
    quiet = [
        AccessEvent(MONDAY + 13 * HOUR + i * 60.0, "k1", f"{HOME_ISP_16}.{i}.7") for i in range(5)
    ]
    prof, _ = analyzer.analyze(
        LIVE, prof, [*quiet, AccessEvent(MONDAY + 14 * HOUR, "k1", LONDON)], MONDAY + DAY
    )
    assert prof.net_peak == 5.0  # a busier ordinary hour is


def test_classes_are_learned_with_the_key(geo: GeoResolver, trained: Factory) -> None:
    prof = trained()
    assert prof.class_state("isp") == ESTABLISHED and prof.class_state("hosting") != ESTABLISHED


def test_a_cloud_vm_in_the_key_s_own_city_is_location_evidence(
    geo: GeoResolver, trained: Factory, tmp_path: Path
) -> None:
    """An office key from an AWS address in London: logged as a new network class; without an
    ASN database (city only) the network detectors do not run."""
    vm = [AccessEvent(MONDAY + 10 * HOUR + i * 120.0, "k1", LONDON_AWS) for i in range(10)]
    _, alerts = Analyzer(geo).analyze(LIVE, trained(), vm, MONDAY + DAY)
    types = {s.type for a in alerts for s in a.signals}
    assert {"network.new_class", "network.new_asn"} <= types
    assert all(a.action == "log" for a in alerts)  # location alone: logged, pairs with volume
    with GeoResolver(write_city_db(tmp_path / "city.mmdb", CITY)) as city_only:
        _, alerts = Analyzer(city_only).analyze(LIVE, trained(), vm, MONDAY + DAY)
    assert not {s.type for a in alerts for s in a.signals} & {
        "network.new_class",
        "network.new_asn",
    }

"""Shared fixtures: a small GeoIP database and a key trained on a week of office-hours traffic."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from detectors.analyzer import Analyzer
from detectors.model import AccessEvent, KeyContext
from detectors.profile import KeyProfile
from geoip.resolver import GeoResolver
from geoip.testdb import write_asn_db, write_city_db

T0 = 1793577600.0  # Monday 2026-11-02 00:00 UTC
DAY, HOUR = 86400.0, 3600.0
LONDON, LONDON_NEW_ASN = "81.2.69.10", "81.2.70.10"
MOSCOW, MOSCOW6, SYDNEY, PARIS = "5.255.255.5", "2a02:6b8::1", "1.1.1.5", "2.2.2.5"
US_NO_COORDS, BERLIN_COARSE = "3.3.3.5", "6.6.6.5"
# London again, from a cloud (AWS), another cloud (DigitalOcean) and a VPN network (M247); and a
# /16 of the home ISP in London, so many client networks (/24s) of one place and network exist.
LONDON_AWS, LONDON_DO, LONDON_VPN = "81.2.71.10", "81.2.72.10", "81.2.73.10"
HOME_ISP_16 = "81.3"

CITY = {
    "81.2.69.0/24": {
        "country": "GB",
        "city": "London",
        "lat": 51.51,
        "lon": -0.09,
        "accuracy_km": 20,
    },
    "81.2.70.0/24": {
        "country": "GB",
        "city": "London",
        "lat": 51.51,
        "lon": -0.09,
        "accuracy_km": 20,
    },
    "5.255.255.0/24": {
        "country": "RU",
        "city": "Moscow",
        "lat": 55.75,
        "lon": 37.62,
        "accuracy_km": 20,
    },
    "2a02:6b8::/32": {
        "country": "RU",
        "city": "Moscow",
        "lat": 55.75,
        "lon": 37.62,
        "accuracy_km": 20,
    },
    "1.1.1.0/24": {
        "country": "AU",
        "city": "Sydney",
        "lat": -33.8,
        "lon": 151.2,
        "accuracy_km": 20,
    },
    **{
        net: {"country": "GB", "city": "London", "lat": 51.51, "lon": -0.09, "accuracy_km": 20}
        for net in ("81.2.71.0/24", "81.2.72.0/24", "81.2.73.0/24", "81.3.0.0/16")
    },
    "2.2.2.0/24": {"country": "FR", "city": "Paris", "lat": 48.85, "lon": 2.35, "accuracy_km": 20},
    "3.3.3.0/24": {"country": "US"},
    "6.6.6.0/24": {"country": "DE", "lat": 52.52, "lon": 13.4, "accuracy_km": 1000},
}
ASN = {
    "81.2.69.0/24": {"asn": 100, "org": "Home Net"},
    "81.2.70.0/24": {"asn": 200, "org": "Other Net"},
    "5.255.255.0/24": {"asn": 300, "org": "Far Net"},
    "81.2.71.0/24": {"asn": 16509, "org": "Amazon.com, Inc."},
    "81.2.72.0/24": {"asn": 14061, "org": "DigitalOcean, LLC"},
    "81.2.73.0/24": {"asn": 9009, "org": "M247 Europe SRL"},
    "81.3.0.0/16": {"asn": 100, "org": "Home Net"},
}


@pytest.fixture(scope="session")
def geo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeoResolver]:
    """A resolver over the small City and ASN databases above."""
    d: Path = tmp_path_factory.mktemp("geo")
    resolver = GeoResolver(write_city_db(d / "city.mmdb", CITY), write_asn_db(d / "asn.mmdb", ASN))
    yield resolver
    resolver.close()


def office_week(key_id: str = "k1", per_hour: int = 30) -> list[AccessEvent]:
    """Mon-Fri, 08:00-17:59 UTC, evenly spaced requests from one London IP."""
    step = HOUR / per_hour
    return [
        AccessEvent(T0 + d * DAY + h * HOUR + i * step, key_id, LONDON)
        for d in range(5)
        for h in range(8, 18)
        for i in range(per_hour)
    ]


@pytest.fixture(scope="session")
def trained_bytes(geo: GeoResolver) -> bytes:
    """A learned office-hours key, serialized (fixtures copy it via from_bytes)."""
    analyzer = Analyzer(geo)
    prof, alerts = analyzer.analyze(KeyContext("k1"), None, office_week(), T0 + 5 * DAY)
    assert prof.learned and not alerts
    return prof.to_bytes()


@pytest.fixture
def trained(trained_bytes: bytes) -> Callable[[], KeyProfile]:
    """Factory for fresh copies of the trained profile."""
    return lambda: KeyProfile.from_bytes(trained_bytes)

"""GeoResolver over a small test database (and one lookup in the packaged GeoLite2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConfigError
from geoip.resolver import GeoResolver, default_city_db
from geoip.testdb import write_asn_db, write_city_db


@pytest.fixture(scope="module")
def geo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GeoResolver]:
    d = tmp_path_factory.mktemp("g")
    city = write_city_db(
        d / "c.mmdb",
        {
            "81.2.69.0/24": {
                "country": "GB",
                "city": "London",
                "lat": 51.5,
                "lon": -0.1,
                "accuracy_km": 20,
            },
            "2a02:6b8::/32": {"country": "RU", "lat": 55.7, "lon": 37.6, "accuracy_km": 500},
            "3.3.3.0/24": {"country": "US"},
        },
    )
    asn = write_asn_db(d / "a.mmdb", {"81.2.69.0/24": {"asn": 20712, "org": "AA"}})
    with GeoResolver(city, asn, cache_size=16) as g:
        yield g


@pytest.mark.parametrize(
    "ip, country, asn",
    [
        ("81.2.69.142", "GB", 20712),
        ("::ffff:81.2.69.142", "GB", 20712),  # IPv4-mapped IPv6
        ("2a02:6b8::1", "RU", None),  # IPv6
        ("3.3.3.3", "US", None),  # country only
        (" 81.2.69.1 ", "GB", 20712),
    ],
)
def test_known_addresses(geo: GeoResolver, ip: str, country: str, asn: int | None) -> None:
    info = geo.lookup(ip)
    assert info is not None and info.country == country and info.asn == asn


@pytest.mark.parametrize(
    "ip",
    [
        "10.0.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "::1",
        "169.254.1.1",
        "fe80::1",
        "240.0.0.1",
        "100.64.0.1",
        "203.0.113.7",
        "224.0.0.1",
        "8.8.8.8",
        "not an ip",
        "",
        "999.1.1.1",
        "1.2.3",
    ],
)
def test_unroutable_unknown_and_invalid_give_none(geo: GeoResolver, ip: str) -> None:
    assert geo.lookup(ip) is None


def test_fields_and_cache(geo: GeoResolver) -> None:
    info = geo.lookup("81.2.69.7")
    assert info is not None and (info.city, info.lat, info.lon, info.accuracy_km, info.asn_org) == (
        "London",
        51.5,
        -0.1,
        20.0,
        "AA",
    )
    hits = geo.cache_info().hits
    assert geo.lookup("81.2.69.7") is info and geo.cache_info().hits == hits + 1


def test_default_geolite2_database() -> None:
    assert default_city_db().name == "GeoLite2-City.mmdb"
    with GeoResolver() as g:
        info = g.lookup("81.2.69.142")
    assert info is not None and info.country == "GB" and info.lat is not None


def test_missing_database_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        GeoResolver(tmp_path / "nope.mmdb")


def test_close_is_idempotent(tmp_path: Path) -> None:
    g = GeoResolver(write_city_db(tmp_path / "c.mmdb", {"81.2.69.0/24": {"country": "GB"}}))
    g.close()
    g.close()
    assert g.lookup("81.2.69.1") is None

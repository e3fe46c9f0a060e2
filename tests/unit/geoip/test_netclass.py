"""Network classes: the shipped ASN table, an override file, bad files, the class on GeoInfo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from geoip.netclass import CLASSES, ISP, class_of, load_classes
from geoip.resolver import GeoResolver
from geoip.testdb import write_asn_db, write_city_db


@pytest.mark.parametrize(
    "asn, expected",
    [
        (16509, "hosting"),  # AWS
        (396982, "hosting"),  # Google Cloud
        (8075, "hosting"),  # Azure
        (24940, "hosting"),  # Hetzner
        (9009, "vpn"),  # M247
        (3320, ISP),  # Deutsche Telekom: not listed, people
        (None, None),  # no ASN database: no class
    ],
)
def test_shipped_table(asn: int | None, expected: str | None) -> None:
    assert class_of(load_classes(), asn) == expected


def test_shipped_table_is_well_formed() -> None:
    table = load_classes()
    assert len(table) >= 20 and set(table.values()) <= CLASSES


def test_override_replaces_the_table(tmp_path: Path) -> None:
    f = tmp_path / "classes.toml"
    f.write_text('[classes]\n64500 = "tor"\n')
    table = load_classes(f)
    assert dict(table) == {64500: "tor"} and class_of(table, 16509) == ISP


@pytest.mark.parametrize(
    "text, says",
    [
        ('[classes]\n64500 = "cloud"\n', "class 'cloud'"),
        ('[classes]\nAS64500 = "vpn"\n', "not an AS number"),
        ("classes = 3\n", "no [classes] table"),
        ("[classes\n", "cannot read"),
    ],
)
def test_bad_files_are_config_errors(tmp_path: Path, text: str, says: str) -> None:
    f = tmp_path / "classes.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_classes(f)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_classes(tmp_path / "nope.toml")


def test_resolver_puts_class_and_network_on_geo(tmp_path: Path) -> None:
    city = write_city_db(
        tmp_path / "c.mmdb",
        {"81.2.69.0/24": {"country": "GB"}, "52.94.0.0/16": {"country": "GB"},
         "2a02:6b8::/32": {"country": "RU"}},
    )  # fmt: skip
    asn = write_asn_db(
        tmp_path / "a.mmdb",
        {"81.2.69.0/24": {"asn": 20712, "org": "AA"}, "52.94.0.0/16": {"asn": 16509, "org": "AWS"}},
    )
    with GeoResolver(city, asn) as g:
        home, cloud, v6 = g.lookup("81.2.69.7"), g.lookup("52.94.3.9"), g.lookup("2a02:6b8::1")
    assert home is not None and (home.net_class, home.network) == (ISP, "81.2.69.0/24")
    assert cloud is not None and (cloud.net_class, cloud.network) == ("hosting", "52.94.3.0/24")
    assert v6 is not None and (v6.net_class, v6.network) == (None, "2a02:6b8::/48")
    with GeoResolver(city, asn, classes={20712: "vpn"}) as g:
        info = g.lookup("81.2.69.7")
    assert info is not None and info.net_class == "vpn"
    with GeoResolver(city) as g:  # no ASN database: network, but no class
        info = g.lookup("81.2.69.7")
    assert info is not None and (info.net_class, info.network) == (None, "81.2.69.0/24")

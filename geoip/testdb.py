"""Build small City and ASN ``.mmdb`` files with ``mmdb-writer`` for tests.

``write_city_db(path, {"81.2.69.0/24": {"country": "GB", "city": "London", "lat": 51.5,
"lon": -0.12, "accuracy_km": 20}})`` writes records shaped like MaxMind's GeoLite2-City;
``write_asn_db(path, {"81.2.69.0/24": {"asn": 20712, "org": "Andrews & Arnold"}})`` likewise
for GeoLite2-ASN. Both databases are IPv6 trees with IPv4 mapped, so either family works.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmdb_writer import MmdbF64, MmdbU16, MmdbU32, MMDBWriter
from netaddr import IPSet


def _city_record(f: Mapping[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"country": {"iso_code": f["country"], "names": {"en": f["country"]}}}
    if f.get("city"):
        rec["city"] = {"names": {"en": f["city"]}}
    if f.get("lat") is not None and f.get("lon") is not None:
        rec["location"] = {
            "latitude": MmdbF64(float(f["lat"])),
            "longitude": MmdbF64(float(f["lon"])),
            "accuracy_radius": MmdbU16(int(f.get("accuracy_km", 50))),
        }
    return rec


def _write(path: Path, db_type: str, records: Mapping[str, dict[str, Any]]) -> Path:
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type=db_type)
    for cidr, rec in records.items():
        writer.insert_network(IPSet([cidr]), rec)
    writer.to_db_file(str(path))
    return path


def write_city_db(path: Path, networks: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a GeoLite2-City-shaped database: {cidr: {country, city?, lat?, lon?, accuracy_km?}}."""
    return _write(path, "GeoLite2-City", {c: _city_record(f) for c, f in networks.items()})


def write_asn_db(path: Path, networks: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write a GeoLite2-ASN-shaped database: {cidr: {asn, org}}."""
    recs = {
        c: {
            "autonomous_system_number": MmdbU32(int(f["asn"])),
            "autonomous_system_organization": str(f["org"]),
        }
        for c, f in networks.items()
    }
    return _write(path, "GeoLite2-ASN", recs)

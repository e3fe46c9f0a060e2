"""Resolve an IP to a ``GeoInfo`` through MaxMind-format City/ASN databases, cached.

Uncached lookups cost ~50 µs; gateway traffic repeats the same egress IPs, so an LRU cache keyed
by the address string turns almost every lookup into a dictionary hit. Addresses that are not
globally routable (private, loopback, link-local, reserved, documentation, CGNAT) and invalid
strings yield ``None`` without touching the databases; nothing here raises on bad input.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import maxminddb

from detectors.model import GeoInfo
from worker.errors import ConfigError


def default_city_db() -> Path:
    """Path of the GeoLite2-City database shipped by the ``maxminddb-geolite2`` package."""
    from _maxminddb_geolite2 import geolite2_database  # the data package behind ``geolite2``

    return Path(geolite2_database())


def _open(path: Path) -> Any:
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError(f"cannot open GeoIP database {path}: {exc}") from exc


def _routable(ip: str) -> str | None:
    """Canonical form of a globally routable address, else None."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if not addr.is_global or addr.is_multicast:
        return None
    return str(addr)


def _city_fields(rec: dict[str, Any]) -> dict[str, Any]:
    country = rec.get("country") or rec.get("registered_country") or {}
    city = (rec.get("city") or {}).get("names", {}).get("en")
    loc = rec.get("location") or {}
    radius = loc.get("accuracy_radius")
    return {
        "country": country.get("iso_code"),
        "city": city,
        "lat": loc.get("latitude"),
        "lon": loc.get("longitude"),
        "accuracy_km": float(radius) if radius is not None else None,
    }


class GeoResolver:
    """City (default: packaged GeoLite2) and optional ASN lookups behind an LRU cache."""

    def __init__(
        self, city_db: Path | None = None, asn_db: Path | None = None, cache_size: int = 65536
    ) -> None:
        self._city: Any = _open(city_db if city_db is not None else default_city_db())
        try:
            self._asn: Any = _open(asn_db) if asn_db is not None else None
        except ConfigError:
            self._city.close()
            raise
        self.has_asn = self._asn is not None
        self._cached = lru_cache(maxsize=cache_size)(self._lookup)

    def lookup(self, ip: str) -> GeoInfo | None:
        """Where ``ip`` is; None for private/reserved/invalid/unknown addresses."""
        return self._cached(ip)

    def cache_info(self) -> Any:
        """The LRU cache's hit/miss statistics."""
        return self._cached.cache_info()

    def _lookup(self, ip: str) -> GeoInfo | None:
        addr = _routable(ip)
        if addr is None or self._city is None:
            return None
        fields: dict[str, Any] = {}
        try:
            rec = self._city.get(addr)
            if isinstance(rec, dict):
                fields.update(_city_fields(rec))
            if self._asn is not None:
                asn = self._asn.get(addr)
                if isinstance(asn, dict):
                    fields["asn"] = asn.get("autonomous_system_number")
                    fields["asn_org"] = asn.get("autonomous_system_organization")
        except (ValueError, maxminddb.InvalidDatabaseError):
            return None
        if not any(v is not None for v in fields.values()):
            return None
        return GeoInfo(**fields)

    def close(self) -> None:
        """Close the database readers (idempotent)."""
        for reader in (self._city, self._asn):
            if reader is not None:
                reader.close()
        self._city = self._asn = None
        self._cached.cache_clear()

    def __enter__(self) -> GeoResolver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

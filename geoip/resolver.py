"""Resolve an IP to a ``GeoInfo`` through MaxMind-format City/ASN databases, cached.

Uncached lookups cost ~50 µs; gateway traffic repeats the same egress IPs, so an LRU cache keyed
by the address string turns almost every lookup into a dictionary hit. Addresses that are not
globally routable (private, loopback, link-local, reserved, documentation, CGNAT) and invalid
strings yield ``None`` without touching the databases; nothing here raises on bad input.

Freshness: IP ranges move between networks and countries every month, so an old database puts
users in the wrong country (false ``geo.new_country``). ``freshness_warning`` says when the city
database was built more than ``STALE_AFTER_DAYS`` ago (the packaged GeoLite2 is a 2018 snapshot:
fine for dev, not for production), and the resolver reopens a database whose file changed
(``geoipupdate`` writes a new file and renames it over the old one) at its next lookup after
``reload_every_s``, without a restart. Replace the file that way (rename), never by writing
into it: the open database is memory-mapped.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any

import maxminddb

from core.errors import ConfigError
from detectors.model import GeoInfo
from detectors.revoked_in_use import network_of
from geoip.netclass import class_of, load_classes

log = logging.getLogger("keywatch.geoip")

# ref: MaxMind rebuilds GeoLite2 twice a week; after a few months enough ranges have moved that
# country-level answers for busy networks are measurably wrong.
STALE_AFTER_DAYS = 120
RELOAD_EVERY_S = 30.0


def default_city_db() -> Path:
    """Path of the GeoLite2-City database shipped by the ``maxminddb-geolite2`` package."""
    from _maxminddb_geolite2 import geolite2_database  # the data package behind ``geolite2``

    return Path(geolite2_database())


def _open(path: Path) -> Any:
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError(f"cannot open GeoIP database {path}: {exc}") from exc


def built_at(path: Path) -> float:
    """When the database was built (epoch seconds, from its metadata)."""
    reader = _open(path)
    try:
        return float(reader.metadata().build_epoch)
    finally:
        reader.close()


def freshness_warning(
    path: Path | None, now: float | None = None, max_age_days: float = STALE_AFTER_DAYS
) -> str | None:
    """A one-line warning when the City database is older than ``max_age_days``, else None."""
    path = path if path is not None else default_city_db()
    built_epoch = built_at(path)
    age_days = ((now if now is not None else time.time()) - built_epoch) / 86400
    if age_days <= max_age_days:
        return None
    built = time.strftime("%Y-%m-%d", time.gmtime(built_epoch))
    return (
        f"the GeoIP city database {path} was built on {built} ({age_days:.0f} days ago): "
        "locations will be wrong for networks that moved since; point KEYWATCH_GEOIP_CITY_DB "
        "at a current GeoLite2/GeoIP2 City file kept fresh by geoipupdate"
    )


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced or rewritten (None: it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


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
    """City (default: packaged GeoLite2) and optional ASN lookups behind an LRU cache.

    Each result also carries the client network (IPv4 /24, IPv6 /48) and, with an ASN database,
    the network class of its ASN from ``classes`` (default: the shipped table, geoip.netclass).
    """

    def __init__(
        self,
        city_db: Path | None = None,
        asn_db: Path | None = None,
        cache_size: int = 65536,
        reload_every_s: float | None = RELOAD_EVERY_S,
        classes: Mapping[int, str] | Path | None = None,
    ) -> None:
        # A table, or the file to load it from (None: the shipped table).
        self.classes = classes if isinstance(classes, Mapping) else load_classes(classes)
        self.city_path = city_db if city_db is not None else default_city_db()
        self.asn_path = asn_db
        self._stamps = (_stamp(self.city_path), _stamp(asn_db) if asn_db else None)
        self._city: Any = _open(self.city_path)
        try:
            self._asn: Any = _open(asn_db) if asn_db is not None else None
        except ConfigError:
            self._city.close()
            raise
        self.has_asn = self._asn is not None
        self.reloads = 0
        self._cached = lru_cache(maxsize=cache_size)(self._lookup)
        self._reload_every = reload_every_s
        self._next_check = time.monotonic() + (reload_every_s or 0.0)

    def lookup(self, ip: str) -> GeoInfo | None:
        """Where ``ip`` is; None for private/reserved/invalid/unknown addresses."""
        if self._reload_every is not None:
            now = time.monotonic()  # one clock read per lookup; a stat only every interval
            if now >= self._next_check:
                self._next_check = now + self._reload_every
                self.reload_if_changed()
        return self._cached(ip)

    def reload_if_changed(self) -> bool:
        """Reopen a database whose file was replaced; keep the old one if the new one is bad."""
        stamps = (_stamp(self.city_path), _stamp(self.asn_path) if self.asn_path else None)
        if stamps == self._stamps or self._city is None:
            return False
        try:
            city = _open(self.city_path) if stamps[0] != self._stamps[0] else None
            asn = _open(self.asn_path) if self.asn_path and stamps[1] != self._stamps[1] else None
        except ConfigError as exc:  # half-written or missing: try again at the next interval
            log.warning("geoip_reload_failed: %s", exc)
            return False
        for attr, new in (("_city", city), ("_asn", asn)):
            if new is not None:
                getattr(self, attr).close()
                setattr(self, attr, new)
        self._stamps = stamps
        self._cached.cache_clear()
        self.reloads += 1
        log.info("geoip_reloaded: %s", self.city_path if city else self.asn_path)
        return True

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
                    fields["net_class"] = class_of(self.classes, fields["asn"])
        except (ValueError, maxminddb.InvalidDatabaseError):
            return None
        if not any(v is not None for v in fields.values()):
            return None
        # Interned: every IP of a network shares one str, so the profile compares by identity.
        return GeoInfo(**fields, network=sys.intern(network_of(addr)))

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

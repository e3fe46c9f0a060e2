"""GeoIP lookups (City and optional ASN databases) with an LRU cache in front."""

from geoip.resolver import GeoResolver, default_city_db

__all__ = ["GeoResolver", "default_city_db"]

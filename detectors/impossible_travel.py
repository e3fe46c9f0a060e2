"""``geo.impossible_travel`` (high): consecutive locations too far apart for the time between.

Distance is great-circle minus both GeoIP accuracy radii (a city-level guess can be off by its
radius in either direction). Moves between two places the key has established (a multi-region
deployment), and any move of a key used from many places (a CI fleet), are not travel. Late
(reordered) events are skipped: their order is unknown.
# ref: Panther impossible travel: > 900 km/h; Datadog Cloud SIEM: ~1000 km/h and > 500 km.
"""

from __future__ import annotations

import math

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import ESTABLISHED, KeyProfile

TYPE = "geo.impossible_travel"
_EARTH_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal a move from the last location that would need more than ~1000 km/h."""
    if not ctx.place or ctx.place == profile.loc_key or profile.loc_ts < 0 or ctx.late:
        return []
    geo, cfg = ctx.geo, ctx.config
    if geo is None or geo.lat is None or geo.lon is None or not profile.learned:
        return []
    dist = haversine_km(profile.loc_lat, profile.loc_lon, geo.lat, geo.lon)
    effective = dist - profile.loc_acc - (geo.accuracy_km or 0.0)
    if effective < cfg.travel_min_km:
        return []
    elapsed = max(event.ts - profile.loc_ts, 1.0)
    speed = effective / elapsed * 3600.0
    if speed <= cfg.travel_max_kmh:
        return []
    if profile.est_places >= cfg.spread_key_places:
        return []
    if (
        profile.place_state(ctx.place) == ESTABLISHED
        and profile.place_state(profile.loc_key) == ESTABLISHED
    ):
        return []
    evidence = {
        "from": {"place": profile.loc_key, "lat": profile.loc_lat, "lon": profile.loc_lon},
        "to": {"place": ctx.place, "lat": geo.lat, "lon": geo.lon, "ip": event.ip},
        "distance_km": round(dist),
        "effective_distance_km": round(effective),
        "elapsed_s": round(elapsed, 1),
        "speed_kmh": round(speed),
        "max_kmh": cfg.travel_max_kmh,
    }
    return [Signal(TYPE, "high", evidence)]

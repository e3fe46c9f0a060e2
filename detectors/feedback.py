"""A person said "benign": teach the key's profile what the alert was about.

Each signal type names what becomes known, so the same behaviour does not alert again:

- ``geo.new_country``: the country (counted as often as the key's most used one, so it is not
  the first to be evicted);
- ``network.new_asn``: the network, likewise;
- ``time.off_hours``: the hour of day (UTC) becomes a usual hour;
- ``usage.spike``: the observed rate becomes the key's level and this hour's baseline;
- ``geo.impossible_travel``: both places become "known" (a multi-region deployment);
- ``transport.key_in_query``: nothing to learn (a practice to fix, not a behaviour).

The key's open detector incidents of those types are closed, so the hours they covered are
learned again. Pure: no I/O, no clock (the time comes with the feedback). This works on the
current ``KeyProfile`` structures; ``profile.learn_feedback`` may take its place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from detectors.config import DetectorConfig
from detectors.profile import MAX_ASNS, MAX_COUNTRIES, MAX_PLACES, KeyProfile, _evict, hour_of_week

Learn = Callable[[KeyProfile, Mapping[str, Any], float, DetectorConfig], bool]


def _known(table: dict[Any, list[Any]], item: Any, cap: int, ts: float) -> bool:
    top = max((e[0] for e in table.values()), default=1)
    entry = table.get(item)
    if entry is None:
        _evict(table, cap)
        table[item] = [max(top, 1), int(ts)]
    else:
        entry[0] = max(entry[0], top)
    return True


def _country(p: KeyProfile, ev: Mapping[str, Any], ts: float, cfg: DetectorConfig) -> bool:
    country = ev.get("country")
    return isinstance(country, str) and _known(p.countries, country, MAX_COUNTRIES, ts)


def _asn(p: KeyProfile, ev: Mapping[str, Any], ts: float, cfg: DetectorConfig) -> bool:
    asn = ev.get("asn")
    return isinstance(asn, int) and _known(p.asns, asn, MAX_ASNS, ts)


def _hour(p: KeyProfile, ev: Mapping[str, Any], ts: float, cfg: DetectorConfig) -> bool:
    hour = ev.get("hour_utc")
    if not isinstance(hour, int) or not 0 <= hour < 24:
        return False
    p.hour_slots[hour] = max(p.hour_slots[hour], 1)
    return True


def _rate(p: KeyProfile, ev: Mapping[str, Any], ts: float, cfg: DetectorConfig) -> bool:
    observed = ev.get("observed_per_hour")
    if not isinstance(observed, int | float) or observed <= 0:
        return False
    hour = int(ts) // 3600
    w, d = hour_of_week(hour), hour % 24
    p.how[w] = max(p.how[w], float(observed))
    p.hod[d] = max(p.hod[d], float(observed))
    p.level = max(p.level, float(observed))
    return True


def _travel(p: KeyProfile, ev: Mapping[str, Any], ts: float, cfg: DetectorConfig) -> bool:
    learned = False
    for end in (ev.get("from"), ev.get("to")):
        if not isinstance(end, Mapping) or not isinstance(end.get("place"), str):
            continue
        place, entry = end["place"], p.places.get(end["place"])
        if entry is None:
            lat, lon = end.get("lat"), end.get("lon")
            if not isinstance(lat, int | float) or not isinstance(lon, int | float):
                continue
            _evict(p.places, MAX_PLACES)
            entry = p.places[place] = [0, int(ts), round(lat, 2), round(lon, 2)]
        entry[0] = max(entry[0], cfg.travel_known_min_count)
        learned = True
    return learned


LEARNERS: dict[str, Learn] = {
    "geo.impossible_travel": _travel,
    "geo.new_country": _country,
    "network.new_asn": _asn,
    "time.off_hours": _hour,
    "usage.spike": _rate,
}


def learn_feedback(
    profile: KeyProfile,
    signal_type: str,
    evidence: Mapping[str, Any],
    ts: float,
    cfg: DetectorConfig | None = None,
) -> bool:
    """Teach ``profile`` that one signal's behaviour is normal; True when something was learned."""
    learn = LEARNERS.get(signal_type)
    return bool(learn and learn(profile, evidence, ts, cfg or DetectorConfig()))


def apply_benign(
    profile: KeyProfile,
    signals: Iterable[Mapping[str, Any]],
    ts: float,
    cfg: DetectorConfig | None = None,
) -> list[str]:
    """Learn every signal of a benign incident and close its detector incidents; the types."""
    cfg = cfg or DetectorConfig()
    types: set[str] = set()
    for s in signals:
        kind, evidence = s.get("type"), s.get("evidence")
        if isinstance(kind, str) and isinstance(evidence, Mapping):
            types.add(kind)
            learn_feedback(profile, kind, evidence, ts, cfg)
    for kind in types:
        profile.incidents.pop(kind, None)
    if profile.cur_hour >= 0:
        profile._derive(profile.cur_hour, cfg)  # thresholds and usual hours from what we taught
    return sorted(types)

"""``network.spread`` (high; critical from 8 countries): many new countries within one hour.

Distributed abuse (a leaked key used by many machines in many countries, each at a low rate)
and key sharing look like this; a fleet or multi-region service uses its own established
countries, which do not count.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import ESTABLISHED, KeyProfile

TYPE = "network.spread"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal when this event's country brings the hour's unestablished countries to the limit."""
    seen = profile.hour_new
    cfg, geo = ctx.config, ctx.geo
    if len(seen) + 1 < cfg.spread_min_countries or geo is None or geo.country is None:
        return []
    if geo.country in seen or not profile.learned or ctx.late:
        return []
    if profile.country_state(geo.country) == ESTABLISHED:
        return []
    n = len(seen) + 1
    severity = "critical" if n >= cfg.spread_critical_countries else "high"
    evidence = {"countries_this_hour": n, "countries": [*seen, geo.country], "ip": event.ip}
    return [Signal(TYPE, severity, evidence)]  # type: ignore[arg-type]

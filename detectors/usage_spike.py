"""``usage.spike`` (high): a sustained rate of >= 10x the key's baseline for this hour of week.

The profile keeps per-minute counts; a minute is "hot" when its count reaches the threshold
``max(ratio x baseline, floor) / 60`` (derived once per hour). A spike needs several hot minutes
within a short window, so a one-minute burst does not alarm, and the absolute floor keeps a key
at 2 requests/hour from alarming at 20. The signal fires when a minute turns hot (once per
minute, not per request); the incident counts the hot minutes.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import RING, KeyProfile

TYPE = "usage.spike"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal when this event makes the current minute hot and enough recent minutes are hot."""
    need = profile.spike_min_count
    minute = int(event.ts) // 60
    if profile.ring[minute % RING] != need or not profile.learned or ctx.late:
        return []
    cfg = ctx.config
    window = [profile.ring[(minute - k) % RING] for k in range(cfg.spike_window_minutes)]
    if sum(1 for c in window if c >= need) < cfg.spike_min_hot_minutes:
        return []
    observed = sum(window) * 60.0 / len(window)
    base = profile.spike_baseline
    evidence = {
        "observed_per_hour": round(observed),
        "baseline_per_hour": round(base, 1),
        "ratio": round(observed / base, 1) if base > 0 else None,
        "window_minutes": len(window),
        "threshold_per_minute": need,
    }
    return [Signal(TYPE, "high", evidence)]

"""``time.off_hours`` (low): activity in an hour of day (UTC) in which the key is never active.

The usual hours (with one hour of tolerance either side, see ``DetectorConfig``) are derived
once per hour by the profile; here it is one bit test per event.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile

TYPE = "time.off_hours"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal an event outside the key's usual hours, once the key is learned."""
    if not profile.learned or (profile.usual_hours >> ctx.hour_of_day) & 1:
        return []
    usual = [h for h in range(24) if profile.hour_slots[h]]
    return [Signal(TYPE, "low", {"hour_utc": ctx.hour_of_day, "usual_hours_utc": usual})]

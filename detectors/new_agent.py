"""``client.new_user_agent`` (low): a user-agent family the key has never used.

A stolen key is usually driven by other software (``python-requests``, ``curl``) than the
owner's SDK. Logged alone (SDK upgrades keep their family; a new tool is common); it is
behaviour evidence next to a new place.
"""

from __future__ import annotations

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import UNSEEN, KeyProfile

TYPE = "client.new_user_agent"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal the first use of an unseen user-agent family by a learned key."""
    fam = ctx.agent
    if not fam or fam in profile.agents or not profile.learned or not profile.agents:
        return []
    if profile.agent_state(fam) != UNSEEN:
        return []
    known = sorted(profile.agents)
    return [Signal(TYPE, "low", {"agent": fam, "known": known, "ip": event.ip})]

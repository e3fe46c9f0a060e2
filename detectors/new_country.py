"""``geo.new_country`` (medium): the key is used from a country it has never used."""

from __future__ import annotations

from typing import Any

from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile

TYPE = "geo.new_country"


def evaluate(event: AccessEvent, profile: KeyProfile, ctx: EvalContext) -> list[Signal]:
    """Signal a country absent from the profile; silent while the key is still learning."""
    geo = ctx.geo
    if geo is None or geo.country is None or not profile.learned:
        return []
    if geo.country in profile.countries:
        return []
    known = sorted(profile.countries)
    evidence: dict[str, Any] = {"country": geo.country, "known": known, "ip": event.ip}
    if geo.city:
        evidence["city"] = geo.city
    if geo.asn is not None:
        evidence["asn"] = geo.asn
    return [Signal(TYPE, "medium", evidence)]

"""Every detector, listed explicitly and alphabetically by signal type (no magic discovery).

Adding a detector: its module, one line here, its test.
"""

from __future__ import annotations

from collections.abc import Callable

from detectors import (
    impossible_travel,
    key_in_query,
    new_asn,
    new_country,
    off_hours,
    second_key,
    usage_spike,
)
from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile

Evaluate = Callable[[AccessEvent, KeyProfile, EvalContext], list[Signal]]

DETECTORS: tuple[tuple[str, Evaluate], ...] = (
    (impossible_travel.TYPE, impossible_travel.evaluate),  # geo.impossible_travel
    (new_country.TYPE, new_country.evaluate),  # geo.new_country
    (new_asn.TYPE, new_asn.evaluate),  # network.new_asn
    (off_hours.TYPE, off_hours.evaluate),  # time.off_hours
    (key_in_query.TYPE, key_in_query.evaluate),  # transport.key_in_query
    (second_key.TYPE, second_key.evaluate),  # transport.second_key
    (usage_spike.TYPE, usage_spike.evaluate),  # usage.spike
)


def detector_types() -> list[str]:
    """The stable signal types of every registered detector."""
    return [t for t, _ in DETECTORS]

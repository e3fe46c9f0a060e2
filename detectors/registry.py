"""Every detector, listed explicitly and alphabetically by signal type (no magic discovery).

Adding a detector: its module, one line here, its test.
"""

from __future__ import annotations

from collections.abc import Callable

from detectors import (
    endpoint_shift,
    impossible_travel,
    key_in_query,
    network_fanout,
    network_spread,
    new_agent,
    new_asn,
    new_class,
    new_country,
    new_place,
    off_hours,
    revoked_in_use,
    second_key,
    usage_spike,
)
from detectors.config import EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile

Evaluate = Callable[[AccessEvent, KeyProfile, EvalContext], list[Signal]]

DETECTORS: tuple[tuple[str, Evaluate], ...] = (
    (revoked_in_use.TYPE, revoked_in_use.evaluate),  # auth.revoked_in_use
    (new_agent.TYPE, new_agent.evaluate),  # client.new_user_agent
    (impossible_travel.TYPE, impossible_travel.evaluate),  # geo.impossible_travel
    (new_country.TYPE, new_country.evaluate),  # geo.new_country
    (new_place.TYPE, new_place.evaluate),  # geo.new_place
    (network_fanout.TYPE, network_fanout.evaluate),  # network.fanout
    (new_asn.TYPE, new_asn.evaluate),  # network.new_asn
    (new_class.TYPE, new_class.evaluate),  # network.new_class
    (network_spread.TYPE, network_spread.evaluate),  # network.spread
    (off_hours.TYPE, off_hours.evaluate),  # time.off_hours
    (key_in_query.TYPE, key_in_query.evaluate),  # transport.key_in_query
    (second_key.TYPE, second_key.evaluate),  # transport.second_key
    (endpoint_shift.TYPE, endpoint_shift.evaluate),  # usage.endpoint_shift
    (usage_spike.TYPE, usage_spike.evaluate),  # usage.spike
)


# Signals raised outside the access-log detectors (the leak scanner).
OTHER_TYPES: tuple[str, ...] = ("leak.public_code",)


# Detectors whose result depends on the single event (its count in the rate windows, its
# query string). Every other detector depends only on the event's location, client and clock
# hour, and on profile state that changes per day or hour; the analyzer skips them for an event
# that repeats the context of one for which they all returned nothing. The gateway's verdict is
# per event too (a refused request runs only ``revoked_in_use``, see detectors.analyzer).
PER_EVENT_TYPES = frozenset(
    {endpoint_shift.TYPE, key_in_query.TYPE, revoked_in_use.TYPE, second_key.TYPE, usage_spike.TYPE}
)


# Detectors that judge the event's network (ASN) and return nothing without an ASN database;
# the analyzer does not run them when its resolver has none.
NEEDS_ASN = frozenset({new_asn.TYPE, new_class.TYPE})


def detector_types() -> list[str]:
    """The stable signal types of every registered detector."""
    return [t for t, _ in DETECTORS]


def signal_types() -> frozenset[str]:
    """Every signal type keywatch can raise: the one list the policy validates against."""
    return frozenset(detector_types()) | frozenset(OTHER_TYPES)

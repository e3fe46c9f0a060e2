"""Alert routing as data: which sinks an alert reaches, and how each delivery is retried.

The policy file's ``[routing]`` (the lowest severity each sink receives) and ``[delivery]``
tables. Delivery itself is I/O and lives with the sinks (``worker.alerting``); these are the
typed settings it runs with. ``[delivery]`` is a ``core.retry.RetryPolicy`` in its file form
(``max_attempts``, ``base_delay_s``, ``max_delay_s``, ``max_total_s``) with the alert defaults,
plus Slack's pace.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from core.retry import Attempts, RetryPolicy, Seconds
from detectors.model import SEVERITY_RANK, Severity

SINKS = ("slack", "webhook", "pagerduty")
Routing = Mapping[str, Severity]  # sink name -> the lowest severity it receives


class RoutingTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[routing]``: the lowest severity each sink receives."""

    slack: Severity = "medium"
    webhook: Severity = "low"
    pagerduty: Severity = "high"

    def routing(self) -> dict[str, Severity]:
        """Sink name -> minimum severity."""
        return {sink: getattr(self, sink) for sink in SINKS}


class Delivery(RetryPolicy, frozen=True, forbid_unknown_fields=True):
    """``[delivery]``: the retry policy of one alert delivery to one sink, and Slack's pace."""

    attempts: Attempts | None = msgspec.field(default=6, name="max_attempts")
    base_delay_s: Seconds = 1.0
    max_delay_s: Seconds = 60.0
    timeout_s: Seconds | None = msgspec.field(default=300.0, name="max_total_s")
    # ref: api.slack.com/apis/rate-limits: incoming webhooks allow about 1 message per second
    slack_min_interval_s: float = 1.0


def at_least(severity: object, minimum: str) -> bool:
    """Whether ``severity`` ranks at or above ``minimum`` (unknown severities rank lowest)."""
    return SEVERITY_RANK.get(str(severity), 0) >= SEVERITY_RANK[minimum]


def reaches(routing: Routing, sink: str, severity: object) -> bool:
    """Whether an alert of ``severity`` goes to ``sink`` (a sink not listed receives all)."""
    return at_least(severity, routing.get(sink, "low"))

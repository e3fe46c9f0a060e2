"""Prometheus metrics of one gateway (its own registry). Labels come from small fixed sets:
never a key, a key id, a hash or an IP."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class GatewayMetrics:
    """Decisions, lookups, publishing and outages."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.decisions = Counter(
            "keywatch_gateway_decisions", "Decisions by outcome", ["auth", "status"], registry=r
        )
        self.lookups = Counter(
            "keywatch_gateway_lookups", "Key lookups by the layer that answered", ["source"],
            registry=r,
        )  # fmt: skip
        self.published = Counter(
            "keywatch_gateway_events_published", "Events published to gateway.access", registry=r
        )
        self.dropped = Counter(
            "keywatch_gateway_events_dropped", "Events dropped (buffer full or broker down)",
            ["reason"], registry=r,
        )  # fmt: skip
        self.buffered = Gauge(
            "keywatch_gateway_events_buffered", "Events waiting to be published", registry=r
        )
        self.backend_errors = Counter(
            "keywatch_gateway_backend_errors", "Redis/SQL/broker errors", ["backend"], registry=r
        )
        self.invalidations = Counter(
            "keywatch_gateway_invalidations", "Cache evictions on key changes", ["via"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "keywatch_gateway_decision_seconds", "Time to decide",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25, 1.0),
            registry=r,
        )  # fmt: skip

    def render(self) -> bytes:
        """The text exposition."""
        return generate_latest(self.registry)

"""Prometheus metrics of one keywatch process (its own registry, so tests can run several).

Contract names: ``keywatch_events_total{format}``, ``keywatch_alerts_total{type,severity}``,
``keywatch_actions_total{action}``, ``keywatch_dead_letters_total{reason}``. Labels never carry a
key, a key id or an IP: their values come from small fixed sets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """The counters and histograms keywatch exports on ``/metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter("keywatch_events", "Access events parsed", ["format"], registry=r)
        self.analyzed = Counter(
            "keywatch_events_analyzed", "Access events run through profiles and detectors",
            registry=r,
        )  # fmt: skip
        self.alerts = Counter("keywatch_alerts", "Alerts raised", ["type", "severity"], registry=r)
        self.actions = Counter("keywatch_actions", "Key actions taken", ["action"], registry=r)
        self.dead_letters = Counter(
            "keywatch_dead_letters", "Inputs sent to the dead-letter topic", ["reason"], registry=r
        )
        self.consumer_restarts = Counter(
            "keywatch_consumer_restarts", "Consumer tasks restarted after a failure", ["consumer"],
            registry=r,
        )  # fmt: skip
        self.extra_keys = Counter(
            "keywatch_extra_keys", "Requests carrying a key besides the authenticated one",
            registry=r,
        )  # fmt: skip
        self.messages = Counter(
            "keywatch_messages", "Kafka messages consumed", ["topic"], registry=r
        )
        self.deliveries = Counter(
            "keywatch_deliveries", "Alert deliveries", ["sink", "outcome"], registry=r
        )
        self.batch_events = Histogram(
            "keywatch_batch_events", "Events per re-keyed batch",
            buckets=(1, 10, 50, 100, 200, 500, 1000, 5000), registry=r,
        )  # fmt: skip
        self.detect_latency = Histogram(
            "keywatch_detection_lag_seconds", "Wall time from event time to detection",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600), registry=r,
        )  # fmt: skip
        self.reorder_late = Counter(
            "keywatch_events_out_of_order", "Events analysed out of event-time order: they came "
            "after a later event of their partition had been analysed (worker.reorder)",
            registry=r,
        )  # fmt: skip
        self.reorder_held = Gauge(
            "keywatch_events_held", "Events held for event-time order (worker.reorder)",
            registry=r,
        )  # fmt: skip
        self.profiles = Gauge("keywatch_profiles", "Key profiles held in memory", registry=r)
        self.leaks = Counter(
            "keywatch_leak_findings", "Leak findings", ["kind", "status"], registry=r
        )
        self.verdicts = Counter(
            "keywatch_verdicts", "Verdicts on alerts applied by the worker", ["verdict"], registry=r
        )
        self.webhooks = Counter(
            "keywatch_webhooks", "Code-push webhooks received", ["source", "outcome"], registry=r
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

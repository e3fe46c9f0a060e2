"""The anomaly worker's Faust app: topics, the profile table and the agents.

Data flow: ``gateway.access`` (any format, batched or not) -> ingest agent (parse, resolve key,
dead-letter the rest) -> re-keyed batches on ``keywatch.events-by-key`` (partition = key id's
partition, see worker.partitioning) -> profile agent (profiles table, detectors, policy) ->
``keywatch.alerts`` -> response agent (throttle/revoke via the key service) and delivery agent
(Slack, webhook, PagerDuty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.base import KeywatchApp
from worker.settings import Settings


class WorkerApp(KeywatchApp):
    """The anomaly worker."""

    def __init__(self, settings: Settings, **faust_extra: Any) -> None:
        super().__init__(settings, settings.app_id, settings.web_port, **faust_extra)
        t, n = settings.topics, settings.partitions
        self.access_topic = self.app.topic(t.access)
        self.events_topic = self.app.topic(t.events_by_key, internal=True, partitions=n)
        self.alerts_topic = self.app.topic(t.alerts, internal=True, partitions=n)
        for register in agent_registrations():
            register(self)


def agent_registrations() -> list[Callable[[WorkerApp], None]]:
    """The worker's agents, listed explicitly (imported here to keep import order simple)."""
    from worker.agents import respond

    return [respond.register]

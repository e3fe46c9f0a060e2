"""The anomaly worker's Faust app: topics, the profile table and the agents.

Data flow: ``gateway.access`` (any format, batched or not) -> ingest consumer (parse, resolve key,
dead-letter the rest; worker.agents.ingest) -> re-keyed batches on ``keywatch.events-by-key``
(partition = key id's partition, see worker.partitioning) -> profile agent (profiles table,
detectors, policy; worker.agents.profiles) ->
``keywatch.alerts`` -> response agent (throttle/revoke via the key service) and delivery agent
(Slack, webhook, PagerDuty).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.base import KeywatchApp
from worker.engine import ChangelogTable, seal_before_recovery
from worker.keycache import KeyCache
from worker.partitioning import partition_for
from worker.settings import Settings


class WorkerApp(KeywatchApp):
    """The anomaly worker."""

    def __init__(self, settings: Settings, **faust_extra: Any) -> None:
        extra = {"table_standby_replicas": settings.standby_replicas, **faust_extra}
        super().__init__(settings, settings.app_id, settings.web_port, **extra)
        t, n = settings.topics, settings.partitions
        self.access_topic = self.app.topic(t.access)
        self.events_topic = self.app.topic(t.events_by_key, internal=True, partitions=n)
        self.alerts_topic = self.app.topic(t.alerts, internal=True, partitions=n)
        self.keycache = KeyCache(self.store.find_many_by_hash, self.store.find_many)
        self.profiles = self._profiles_table()
        self.sealer = seal_before_recovery(self.app, settings.changelog_seal)
        self.ingest: Any = None  # set by worker.agents.ingest.register
        self.profile_stage: Any = None  # set by worker.agents.profiles.register
        self.profile_checkpoint: Any = None  # likewise; flushed by worker.agents.feedback
        for register in agent_registrations():
            register(self)

    def _profiles_table(self) -> Any:
        """Key id -> KeyProfile, changelog-backed; changelog partition = partition_for(key id)."""
        table = ChangelogTable(
            self.app,
            name="profiles",
            partitions=self.settings.partitions,
            partition_of=partition_for,
            help="Per-key usage profiles (detectors.profile.KeyProfile).",
        )
        return self.app.tables.add(table)


def agent_registrations() -> list[Callable[[WorkerApp], None]]:
    """The worker's agents, listed explicitly (imported here to keep import order simple)."""
    from worker.agents import feedback, ingest, profiles, respond

    return [ingest.register, profiles.register, respond.register, feedback.register]

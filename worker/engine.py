"""The one module that touches Faust and aiokafka internals (faust-streaming 0.15, aiokafka 0.14).

Agents use what this module offers and nothing private of the stream engine. Each internal
relied on is listed here and pinned by tests/unit/worker/test_engine.py, so an upgrade that
changes one fails there, loudly, instead of in production:

- ``bound_fetch_wait``: ``AIOKafkaConsumerThread._create_worker_consumer`` creates the aiokafka
  consumer, whose fetcher reads ``AIOKafkaConsumer._fetch_max_wait_ms`` when it starts.
- ``DeferredChangelogTable``: ``Table.on_key_set`` is called on every assignment (and sends the
  changelog record by default); ``Table.data`` is the store's mapping; ``Producer.send`` takes
  ``(topic, key, value, partition, timestamp, headers)`` positionally.
- ``HeldAcks``: a ``Message`` is acknowledged (its offset committable) once its reference count,
  raised by ``Message.incref`` and lowered by ``Event.ack``, reaches zero.
- ``seal_before_recovery``: ``Recovery._build_highwaters(consumer, tps, destination, title)``
  is where recovery reads each changelog partition's end offset, and it stops there;
  ``credentials_to_aiokafka_auth`` turns Faust's broker credentials into aiokafka options.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import faust
import structlog
from aiokafka.admin import AIOKafkaAdminClient
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = structlog.get_logger("keywatch.engine")

# The key of the record that seals a changelog partition: a tombstone, so recovery applies it
# as "delete a key that does not exist" and a compacted topic drops it.
SEAL_KEY = b"\x00keywatch.seal"
TANSU_CLUSTER_PREFIX = "tansu"  # Tansu's cluster id is "tansu_cluster" unless configured


# ---- recovery on brokers that under-report end offsets (Tansu) --------------------------------


async def broker_cluster_id(app: faust.App) -> str | None:
    """The broker's cluster id (DescribeCluster), or None when it cannot be asked."""
    conf = app.conf
    auth = faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=[f"{u.host}:{u.port or 9092}" for u in conf.broker], **auth
    )
    try:
        await admin.start()
        described = await admin.describe_cluster()
        cluster_id: str | None = described.get("cluster_id")
        return cluster_id
    except Exception as exc:  # an unanswered question is "not Tansu": seal only when known
        log.warning("cluster_id_unknown", error=repr(exc))
        return None
    finally:
        await admin.close()


class ChangelogSealer:
    """Makes the broker's reported end of each changelog partition its real end.

    Tansu reports a partition's end offset as the last produce batch's base offset + 1, so
    after a batch of n records it is n - 1 short, and Faust's recovery, which stops at the
    reported end, leaves out the batch's other records (8 of 50 profiles came back in issue
    18). A record produced alone ends with a one-record batch, which Tansu reports right:
    before recovery reads the ends, each non-empty changelog partition it is about to read
    gets one tombstone. Cost: one produce per assigned non-empty partition per rebalance,
    plus a second ListOffsets; nothing on the write path.
    """

    def __init__(self, app: faust.App, mode: str) -> None:
        self.app, self.mode = app, mode
        self._needed: bool | None = {"on": True, "off": False}.get(mode)
        self.sealed = 0  # partitions sealed so far (for tests and logs)

    async def needed(self) -> bool:
        """Whether this broker needs sealing (asked once per process in "auto" mode)."""
        if self._needed is None:
            cluster_id = await broker_cluster_id(self.app)
            self._needed = bool(cluster_id and cluster_id.startswith(TANSU_CLUSTER_PREFIX))
            log.info("changelog_seal", cluster_id=cluster_id, sealing=self._needed)
        return self._needed

    async def seal(self, tps: Iterable[TP]) -> float:
        """Produce one tombstone alone to each partition; returns the seconds it took."""
        t0 = time.perf_counter()
        send = self.app.producer.send
        futures = [await send(tp.topic, SEAL_KEY, None, tp.partition, None, None) for tp in tps]
        await asyncio.gather(*futures)
        self.sealed += len(futures)
        return time.perf_counter() - t0


def seal_before_recovery(app: faust.App, mode: str) -> ChangelogSealer:
    """Wrap Faust's recovery so that it reads end offsets only after sealing (see above)."""
    sealer = ChangelogSealer(app, mode)
    recovery = app.tables.recovery
    original = recovery._build_highwaters

    async def build_highwaters(
        consumer: Any, tps: set[TP], destination: Counter[TP], title: str
    ) -> None:
        await original(consumer, tps, destination, title)
        # destination holds end - 1: -1 for an empty partition, which needs no seal
        used = [tp for tp in tps if destination.get(tp, -1) >= 0]
        if used and await sealer.needed():
            took = await sealer.seal(used)
            await original(consumer, tps, destination, title)
            log.info("changelog_sealed", kind=title, partitions=len(used), ms=round(took * 1e3))

    recovery._build_highwaters = build_highwaters  # type: ignore[method-assign]
    return sealer

"""``keywatch worker`` and ``keywatch scanner``: run a Faust worker process."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from typing import Any

import click
import structlog

from worker.settings import Settings


def _run(kind: str, loglevel: str) -> None:
    import faust

    from worker import logs
    from worker.brokerwait import wait_for_broker

    settings = Settings.from_env()
    # before Faust starts: it would print a traceback and a screen of "Stopping…" lines
    wait_for_broker(settings.broker_urls, settings.broker_wait_s, settings.broker)
    logs.configure(loglevel)
    if kind == "worker" and not os.environ.get("KEYWATCH_DEV"):  # keywatch dev sets it
        from geoip.resolver import freshness_warning

        stale = freshness_warning(settings.geoip_city_db)
        if stale:
            structlog.get_logger("keywatch").warning("geoip_database_stale", detail=stale)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if kind == "worker":
        from worker.app import WorkerApp

        kapp = WorkerApp(settings).app
    else:
        from worker.scanner_app import ScannerApp

        kapp = ScannerApp(settings).app
    tune_gc()
    worker_class(faust.Worker)(
        kapp, loglevel=loglevel.lower(), quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


# A stop that has not finished by then is abandoned: with the broker gone, Faust's consumer keeps
# retrying its final commit and fetch for minutes. Nothing is lost: uncommitted input is replayed.
STOP_DEADLINE_S = 8.0


def worker_class(base: Any) -> Any:
    """``base`` (faust.Worker) whose SIGTERM/SIGINT also arm a hard stop after the deadline,
    without the progress spinner."""

    class Worker(base):  # type: ignore[misc]
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # At WARNING or ERROR, Faust's progress spinner sets the root logger to DEBUG, so
            # every debug record (one per message sent, with its value) was built and redacted:
            # 39% of the worker's CPU in benchmarks/worker_bench.py (py-spy).
            self.spinner = None
            super().on_setup_root_logger(logger, level)

        def _on_sigterm(self) -> None:
            arm_stop_deadline(STOP_DEADLINE_S)
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            arm_stop_deadline(STOP_DEADLINE_S)
            super()._on_sigint()

    return Worker


_deadline: threading.Timer | None = None


def arm_stop_deadline(seconds: float) -> None:
    """Exit the process ``seconds`` from now unless it has exited by itself (armed once)."""
    global _deadline
    if _deadline is not None:
        return

    def expire() -> None:
        sys.stderr.write(f"keywatch: stop did not finish in {seconds:.0f}s; exiting now\n")
        sys.stderr.flush()
        os._exit(1)

    _deadline = threading.Timer(seconds, expire)
    _deadline.daemon = True
    _deadline.start()


# Generation-0 threshold: the default (700 net allocations) runs a collection every few events,
# since parsing and batch decoding allocate ~10-20 short-lived dicts/tuples per event; gen1 and
# gen2 then follow from it. At 50k, a young collection runs every few thousand events.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Freeze what start-up built (modules, app, settings) and make young collections rare.

    Measured with benchmarks/worker_bench.py: the hot path is almost all short-lived,
    acyclic objects, and each collection also walked the imported modules and Faust's objects.
    """
    gc.collect()
    gc.freeze()  # never scanned again: they live as long as the process
    gc.set_threshold(*GC_THRESHOLDS)


@click.command("worker")
@click.option(
    "--loglevel", default=None, help="DEBUG, INFO, WARNING, ERROR (default KEYWATCH_LOG_LEVEL)."
)
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes on this host (default KEYWATCH_WORKER_PROCESSES, else one per core).",
)
def worker_command(loglevel: str | None, processes: int | None) -> None:
    """Run the anomaly worker (Faust) against KEYWATCH_BROKER."""
    settings = Settings.from_env()
    level = loglevel or settings.log_level
    from worker.supervisor import default_processes

    n = processes or default_processes(settings)
    if n == 1:
        _run("worker", level)
        return
    from worker import logs
    from worker.brokerwait import wait_for_broker
    from worker.supervisor import supervise

    # once here, not once per child: an unreachable broker is one line, not N
    wait_for_broker(settings.broker_urls, settings.broker_wait_s, settings.broker)
    logs.configure(level)
    sys.exit(supervise(settings, n, level))


@click.command("scanner")
@click.option(
    "--loglevel", default=None, help="DEBUG, INFO, WARNING, ERROR (default KEYWATCH_LOG_LEVEL)."
)
def scanner_command(loglevel: str | None) -> None:
    """Run the leak scanner (Faust app with the webhook intake) against KEYWATCH_BROKER."""
    _run("scanner", loglevel or Settings.from_env().log_level)

"""``keywatch worker`` and ``keywatch scanner``: run a Faust worker process."""

from __future__ import annotations

import logging

import click

from worker.settings import Settings


def _run(kind: str, loglevel: str) -> None:
    import faust

    from worker import logs

    settings = Settings.from_env()
    logs.configure(loglevel)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    if kind == "worker":
        from worker.app import WorkerApp

        kapp = WorkerApp(settings).app
    else:
        from worker.scanner_app import ScannerApp

        kapp = ScannerApp(settings).app
    faust.Worker(
        kapp, loglevel=loglevel.lower(), quiet=True, redirect_stdouts=False
    ).execute_from_commandline()


@click.command("worker")
@click.option(
    "--loglevel", default=None, help="DEBUG, INFO, WARNING, ERROR (default KEYWATCH_LOG_LEVEL)."
)
def worker_command(loglevel: str | None) -> None:
    """Run the anomaly worker (Faust) against KEYWATCH_BROKER."""
    _run("worker", loglevel or Settings.from_env().log_level)


@click.command("scanner")
@click.option(
    "--loglevel", default=None, help="DEBUG, INFO, WARNING, ERROR (default KEYWATCH_LOG_LEVEL)."
)
def scanner_command(loglevel: str | None) -> None:
    """Run the leak scanner (Faust app with the webhook intake) against KEYWATCH_BROKER."""
    _run("scanner", loglevel or Settings.from_env().log_level)

"""``keywatch dev``: the whole system on one machine (embedded broker, SQLite, worker, scanner)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import FrameType

import click

from worker.devstack import DevStack


@click.command("dev")
@click.option("--demo", is_flag=True, help="Issue keys and replay simulated traffic with attacks.")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path(".keywatch/dev"),
    show_default=True, help="Where the SQLite key store, table state and logs go.",
)  # fmt: skip
@click.option("--fresh", is_flag=True, help="Delete the data directory first.")
def command(demo: bool, data_dir: Path, fresh: bool) -> None:
    """Run the embedded broker, the anomaly worker and the leak scanner; Ctrl-C stops all."""
    stack = DevStack(data_dir, fresh=fresh or demo)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    sink = None
    if demo and not os.environ.get("KEYWATCH_SLACK_WEBHOOK_URL"):
        from worker.demo import SlackSink

        sink = SlackSink()
        sink.start()
        stack.extra_env["KEYWATCH_SLACK_WEBHOOK_URL"] = sink.url
    try:
        stack.start(echo=click.echo)
        click.echo(stack.describe())
        if demo:
            from worker.demo import run_demo

            run_demo(stack, sink)
        else:
            click.echo("Ctrl-C to stop.")
            while stack.healthy():
                time.sleep(0.5)
            click.echo("a keywatch process exited; see the logs above", err=True)
    except KeyboardInterrupt:
        click.echo("\nstopping…")
    finally:
        stack.stop()
        if sink is not None:
            sink.stop()
        signal.signal(signal.SIGTERM, previous)
        click.echo("stopped.")
    if os.environ.get("KEYWATCH_DEV_EXIT_NONZERO_ON_CRASH") and not stack.clean_exit:
        raise SystemExit(1)

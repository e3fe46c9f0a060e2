"""``keywatch dev``: the whole system on one machine (embedded broker and Redis, SQLite, worker,
scanner).

Every signal a user sends stops the stack: SIGINT (Ctrl-C, also when a non-interactive shell
started us in the background with SIGINT ignored), SIGTERM and SIGHUP (the terminal closed).
The children die with this process even when it is killed outright (``worker.children``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import click

from core.errors import ConfigError
from worker import devenv
from worker.devstack import DevStack

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _say(text: str, err: bool = False) -> None:
    """Print, unless the terminal is gone (SIGHUP): stopping must not fail on output."""
    with contextlib.suppress(OSError):
        click.echo(text, err=err)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """The first stop signal raises KeyboardInterrupt; later ones are ignored while stopping."""
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _refuse_second_stack(data_dir: Path) -> None:
    """Two stacks on one data directory would share (and, with --demo, delete) its files."""
    handoff = data_dir / "env"
    with contextlib.suppress(OSError, ValueError):
        pid, _ = devenv.read(handoff)
        if pid != os.getpid() and devenv.running(pid):
            raise ConfigError(f"keywatch dev is already running on {data_dir} (pid {pid})")


@click.command("dev")
@click.option(
    "--demo", is_flag=True,
    help="Issue keys and replay simulated traffic with attacks (starts from a fresh data "
    "directory).",
)  # fmt: skip
@click.option(
    "--data-dir", type=click.Path(path_type=Path), default=Path(".keywatch/dev"),
    show_default=True, help="Where the SQLite key store, table state, logs and env file go.",
)  # fmt: skip
@click.option("--fresh", is_flag=True, help="Delete the data directory first.")
def command(demo: bool, data_dir: Path, fresh: bool) -> None:
    """Run the embedded broker and Redis, the anomaly worker, the leak scanner and the gateway.

    Writes DATA_DIR/env (KEYWATCH_BROKER, KEYWATCH_DATABASE_URL, KEYWATCH_REDIS_URL, and
    KEYWATCH_GATEWAY_LISTEN for information): other keywatch commands run from this directory
    use it. With --demo, a sample API behind the gateway middleware takes real HTTP requests.
    Ctrl-C stops everything.
    """
    _refuse_second_stack(data_dir)
    if demo and data_dir.exists():
        _say(f"--demo starts from a fresh data directory: deleting {data_dir.resolve()}")
    with _stop_on_signals():
        _run(DevStack(data_dir, fresh=fresh or demo), demo)


def _run(stack: DevStack, demo: bool) -> None:
    sink = None
    if demo and not os.environ.get("KEYWATCH_SLACK_WEBHOOK_URL"):
        from worker.demo import SlackSink

        sink = SlackSink()
        sink.start()
        stack.extra_env["KEYWATCH_SLACK_WEBHOOK_URL"] = sink.url
    api_url = ""
    if demo:
        from worker.demo import add_sample_api

        api_url = add_sample_api(stack)
    try:
        stack.start(echo=_say)
        _say(stack.describe())
        if demo:
            from worker.demo import run_demo

            run_demo(stack, sink, api_url)
        else:
            _say("Ctrl-C to stop.")
            while stack.healthy():
                time.sleep(0.5)
            _say("a keywatch process exited; see the logs above", err=True)
    except KeyboardInterrupt:
        _say("\nstopping…")
    finally:
        stack.stop()
        if sink is not None:
            sink.stop()
        _say("stopped.")
    if os.environ.get("KEYWATCH_DEV_EXIT_NONZERO_ON_CRASH") and not stack.clean_exit:
        raise SystemExit(1)

"""The ``keywatch`` command line.

Sub-commands live in ``worker.commands.*`` and are imported only when run, so ``keywatch keys``
does not pay for importing Faust. User errors (``KeywatchError``) become one line on stderr and
exit status 2; never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from core.errors import KeywatchError
from worker import __version__

# name -> "module:attribute"; alphabetical.
COMMANDS: dict[str, str] = {
    "alerts": "worker.commands.alerts:command",
    "dev": "worker.commands.dev:command",
    "gateway": "worker.commands.gateway:command",
    "health": "worker.commands.health:command",
    "keys": "worker.commands.keys:command",
    "publish": "worker.commands.publish:command",
    "replay": "worker.commands.replay:command",
    "scan": "worker.commands.scan:command",
    "scanner": "worker.commands.run:scanner_command",
    "simulate": "worker.commands.simulate:command",
    "worker": "worker.commands.run:worker_command",
}


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._load(name) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._load(cmd_name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not built in this installation
                return None
            raise
        command: click.Command = getattr(module, attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keywatch")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """keywatch: a streaming guard for API keys.

    Configuration comes from KEYWATCH_* environment variables (see the README). Run from a
    directory where `keywatch dev` is running, commands use its broker, key store and Redis
    (.keywatch/dev/env) for whichever of those variables are unset.
    """
    from worker import devenv, logs

    # Short-lived commands log warnings to stderr; long-running ones reconfigure (JSON logs).
    logs.configure(os.environ.get("KEYWATCH_LOG_LEVEL", "WARNING"), json=False)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if ctx.invoked_subcommand != "dev":  # the stack itself never reads its own handoff
        _used, warning = devenv.load(os.environ)
        if warning:
            click.echo(f"keywatch: warning: {warning}", err=True)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point: user errors are one line and exit status 2."""
    try:
        return cli.main(args=argv, prog_name="keywatch", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeywatchError as exc:
        click.echo(f"keywatch: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    # standalone_mode=False makes click return ctx.exit()'s status instead of exiting with it
    # (``keywatch scan`` exits 1 on a verified finding); the console script does the same.
    status = main()
    sys.exit(status if isinstance(status, int) else 0)

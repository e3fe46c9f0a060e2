"""``keywatch gateway``: the authorization service (Envoy ext_authz shape) in front of an API."""

from __future__ import annotations

from typing import Any

import click

from gateway.settings import GatewaySettings, parse_listen


@click.command("gateway")
@click.option("--listen", metavar="HOST:PORT",
              help="Where to listen (KEYWATCH_GATEWAY_LISTEN; 127.0.0.1:6068).")  # fmt: skip
@click.option("--fail-mode", type=click.Choice(["open", "closed"]),
              help="Keys that cannot be checked at all (KEYWATCH_GATEWAY_FAIL_MODE).")  # fmt: skip
def command(listen: str | None, fail_mode: str | None) -> None:
    """Verify API keys, enforce rate limits, throttles and revocations, publish every request.

    Answers any method and path as an authorization check (200 allow, 401/429 refuse);
    GET /health and /metrics are its own.
    """
    from gateway.service import run
    from worker import logs

    overrides: dict[str, Any] = {}
    if listen:
        try:
            overrides["listen"] = parse_listen(listen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
    if fail_mode:
        overrides["fail_mode"] = fail_mode
    settings = GatewaySettings.from_env(**overrides)
    logs.configure(settings.base.log_level, json=True)
    run(settings)

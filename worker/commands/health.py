"""``keywatch health``: exit 0 when the local worker/scanner answers ``/health`` with 200.

For container health checks: the ports come from the same settings the processes use
(``KEYWATCH_WEB_PORT``, ``KEYWATCH_SCANNER_WEB_PORT``), so a check and a server cannot
disagree about where to look.
"""

from __future__ import annotations

import http.client

import click

from worker.settings import Settings


def _status(port: int, timeout_s: float) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", "/health")
        reply = conn.getresponse()
        return reply.status, reply.read(500).decode("utf-8", "replace")
    finally:
        conn.close()


@click.command("health")
@click.option(
    "--of", "of", type=click.Choice(["any", "worker", "scanner"]), default="any",
    show_default=True, help="Which process to ask (any: healthy if either answers 200).",
)  # fmt: skip
@click.option("--timeout", "timeout_s", type=float, default=2.0, show_default=True)
def command(of: str, timeout_s: float) -> None:
    """Ask the local /health; exit 0 if it is 200, else print why and exit 1."""
    settings = Settings.from_env()
    ports = {"worker": settings.web_port, "scanner": settings.scanner_web_port}
    asked = ports if of == "any" else {of: ports[of]}
    problems = []
    for name, port in asked.items():
        try:
            status, body = _status(port, timeout_s)
        except OSError as exc:
            problems.append(f"{name} (127.0.0.1:{port}): {exc.strerror or exc}")
            continue
        if status == 200:
            click.echo(f"{name}: ok")
            return
        problems.append(f"{name} (127.0.0.1:{port}): {status} {body.strip()}")
    click.echo("unhealthy: " + "; ".join(problems), err=True)
    raise SystemExit(1)

"""``keywatch keys link``: tell keywatch which key a gateway's own credential or consumer id is.

Kong with ``hide_credentials`` logs only its credential UUID and the consumer; without a link
such events cannot be attributed and are dead-lettered (``unknown_key``).
"""

from __future__ import annotations

import click
import orjson

from core.errors import KeyStoreError
from worker.keystore.links import link
from worker.keystore.store import KeyStore
from worker.settings import Settings


@click.command("link")
@click.argument("key_id")
@click.option("--kong-credential", "credential", metavar="UUID",
              help="Kong credential id (authenticated_entity.id in Kong's log).")  # fmt: skip
@click.option("--kong-consumer", "consumer", metavar="UUID",
              help="Kong consumer id (consumer.id): every request of that consumer.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def link_command(key_id: str, credential: str | None, consumer: str | None, as_json: bool) -> None:
    """Link a gateway credential or consumer id to KEY_ID (idempotent)."""
    if (credential is None) == (consumer is None):
        raise KeyStoreError("give exactly one of --kong-credential or --kong-consumer")
    kind, gateway_id = (
        ("kong_credential", credential) if credential else ("kong_consumer", consumer)
    )
    assert gateway_id is not None
    store = KeyStore(Settings.from_env().database_url)
    try:
        changed = link(store, key_id, gateway_id, kind)
    finally:
        store.close()
    if as_json:
        body = {"key_id": key_id, "gateway_id": gateway_id.lower(), "kind": kind,
                "changed": changed}  # fmt: skip
        click.echo(orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode())
    else:
        verb = "linked" if changed else "already linked"
        click.echo(f"{verb}: {kind.replace('_', ' ')} {gateway_id.lower()} -> key {key_id}")

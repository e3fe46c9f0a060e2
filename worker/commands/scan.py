"""``keywatch scan PATH... [--revoke] [--json|--sarif]``: the streaming scanner's engine and
response over local diffs, patches, files, directories or stdin.

Exit status: 0 when no finding is verified (a key of ours, whatever its status), 1 when one
is, 2 on error (one line on stderr). Without ``--revoke`` nothing is changed or recorded.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from worker import __version__
from worker.errors import KeywatchError

MAX_FILE_BYTES = 5 * 1024 * 1024
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".tox"})


def looks_like_diff(text: str) -> bool:
    """A unified diff or patch: a ``diff --git``/``---``+``+++`` header, or hunk headers."""
    head = text[:65536]
    if head.startswith("diff --git ") or "\ndiff --git " in head:
        return True
    return bool(re.search(r"^--- .*\n\+\+\+ .*\n@@ -\d", head, re.MULTILINE)) or (
        head.startswith("@@ -") and "\n+" in head
    )


def iter_inputs(paths: Sequence[str], max_bytes: int) -> Iterator[tuple[str, str]]:
    """``(display path, text)`` for every readable text file under ``paths`` (``-``: stdin)."""
    for arg in paths:
        if arg == "-":
            yield "-", sys.stdin.read()
            continue
        path = Path(arg)
        if not path.exists():
            raise KeywatchError(f"no such file or directory: {arg}")
        files = [path] if path.is_file() else sorted(_walk(path))
        for f in files:
            text = _read_text(f, max_bytes)
            if text is not None:
                yield str(f), text


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            yield Path(dirpath) / name


def _read_text(path: Path, max_bytes: int) -> str | None:
    """The file as text; None for binary, oversized or unreadable files."""
    try:
        if not path.is_file() or path.stat().st_size > max_bytes:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if b"\x00" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def scan_inputs(engine: Any, inputs: Iterator[tuple[str, str]]) -> list[Any]:
    """Candidates of every input: diffs on their added lines, other files whole."""
    found: list[Any] = []
    for name, text in inputs:
        if looks_like_diff(text):
            found += engine.scan_diff(text)
        else:
            found += engine.scan_text(text, None if name == "-" else name)
    return found


async def _verify(candidates: list[Any], revoke: bool) -> list[Any]:
    from scanners.response import LeakContext, LeakResponder
    from worker.keystore.redis_view import RedisView
    from worker.keystore.service import KafkaAnnouncer, KeyService
    from worker.keystore.store import KeyStore
    from worker.settings import Settings

    settings = Settings.from_env()
    store = KeyStore(settings.database_url)
    redis = RedisView(settings.redis_url) if revoke and settings.redis_url else None
    announcer = (
        KafkaAnnouncer(settings.broker_urls, settings.topics.key_actions, 3.0) if revoke else None
    )
    try:
        keys = KeyService(store, redis, announcer)
        responder = LeakResponder(keys, act=revoke, remember=revoke, actor="cli")
        return await responder.respond(candidates, LeakContext(source="cli"))
    finally:
        if announcer is not None:
            await announcer.close()
        if redis is not None:
            await redis.close()
        store.close()


def finding_dict(finding: Any) -> dict[str, Any]:
    """One output record: the alert shape plus the candidate's column, encoding, checksum."""
    out: dict[str, Any] = dict(finding.candidate)
    out.update(finding.to_dict())
    out["message"] = out["summary"]
    out["revoked_now"] = finding.applied
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no leaked keys found"
    head = ("STATUS", "ACTION", "RULE", "KEY", "KEY ID", "WHERE")
    lines = [head] + [
        (r["status"], r["action"] + ("d" if r["revoked_now"] else ""), r["rule_id"],
         r["redacted"], r["key_id"] or "-", f"{r['path'] or '-'}:{r['line'] or '-'}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


@click.command("scan")
@click.argument("paths", nargs=-1, required=True)
@click.option("--revoke", is_flag=True, help="Revoke live keys found (the scanner's response).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per finding (JSON lines).")
@click.option("--sarif", is_flag=True, help="SARIF 2.1.0 for code-scanning tools.")
@click.option("--rules", type=click.Path(dir_okay=False), help="Rules TOML (default: built in).")
@click.option("--max-file-size", default=MAX_FILE_BYTES, show_default=True,
              help="Skip files bigger than this many bytes.")  # fmt: skip
@click.pass_context
def command(
    ctx: click.Context, paths: tuple[str, ...], revoke: bool, as_json: bool, sarif: bool,
    rules: str | None, max_file_size: int,
) -> None:  # fmt: skip
    """Scan diffs, patches, files, directories or - (stdin) for leaked keys.

    Each candidate is verified against the key store (KEYWATCH_DATABASE_URL) by its SHA-256.
    Exit 0: nothing verified found; 1: a key of ours was found; 2: error.
    """
    if as_json and sarif:
        _fail(ctx, "--json and --sarif are exclusive")
    try:
        from scanners.engine import Engine

        engine = Engine.from_file(Path(rules)) if rules else Engine.default()
        candidates = scan_inputs(engine, iter_inputs(paths, max_file_size))
        findings = asyncio.run(_verify(candidates, revoke)) if candidates else []
    except (KeywatchError, OSError, UnicodeError) as exc:
        _fail(ctx, str(exc))
    rows = [finding_dict(f) for f in findings]
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
    elif sarif:
        from scanners.sarif import to_sarif

        click.echo(orjson.dumps(to_sarif(rows, __version__), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(_table(rows))
    ctx.exit(1 if any(f.verified for f in findings) else 0)


def _fail(ctx: click.Context, message: str) -> NoReturn:
    click.echo(f"keywatch scan: error: {message}", err=True)
    ctx.exit(2)

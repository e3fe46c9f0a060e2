"""``keywatch scan PATH... [--revoke] [--json|--sarif]``: the streaming scanner's engine and
response over local diffs, patches, files, directories or stdin.

Exit status: 0 when no finding is verified (a key of ours, whatever its status), 1 when one
is, 2 on error (one line on stderr) and 2 when anything could not be scanned (over
``--max-file-size``, unreadable, not a regular file): every skip is one line on stderr and a
notification in ``--json`` (``{"kind": "notification", ...}``) and SARIF
(``invocations[].toolExecutionNotifications``). Binary files are scanned (as latin-1: an ASCII
key stays whole in them). File paths are scanned too; a key in a path is never printed whole.
Without ``--revoke`` nothing is changed or recorded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from core.errors import KeywatchError
from worker import __version__

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


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped:
    """An input that could not be scanned, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        """The ``--json`` notification line."""
        return {"kind": "notification", "level": "warning", "path": self.path,
                "reason": self.reason, "message": f"not scanned: {self.reason}"}  # fmt: skip


Input = tuple[str, str] | Skipped


def iter_inputs(paths: Sequence[str], max_bytes: int) -> Iterator[Input]:
    """``(display path, text)`` for every file under ``paths`` (``-``: stdin), or a ``Skipped``."""
    for arg in paths:
        if arg == "-":
            yield "stdin", sys.stdin.read()
            continue
        path = Path(arg)
        if not path.exists() and not path.is_symlink():
            raise KeywatchError(f"no such file or directory: {arg}")
        files = [path] if not path.is_dir() else sorted(_walk(path))
        for f in files:
            yield _read_text(f, max_bytes)


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            yield Path(dirpath) / name


def _read_text(path: Path, max_bytes: int) -> Input:
    """The file as text (binary as latin-1), or why it could not be read."""
    try:
        if not path.is_file():
            return Skipped(str(path), "not a regular file")
        size = path.stat().st_size
        if size > max_bytes:
            return Skipped(str(path), f"{size} bytes, over --max-file-size {max_bytes}")
        data = path.read_bytes()
    except OSError as exc:
        return Skipped(str(path), f"unreadable: {exc.strerror or type(exc).__name__}")
    if b"\x00" in data[:8192]:
        return str(path), data.decode("latin-1")
    return str(path), data.decode("utf-8", "replace")


def scan_inputs(
    engine: Any, inputs: Iterator[Input], on_skip: Callable[[Skipped], None] | None = None
) -> list[Any]:
    """Candidates of every input (diffs on their added lines, other files whole, and every
    path); skipped inputs go to ``on_skip`` with their path made safe to print."""
    found: list[Any] = []
    for item in inputs:
        if isinstance(item, Skipped):
            found += engine.scan_path(item.path)
            if on_skip is not None:
                on_skip(Skipped(engine.safe_path(item.path), item.reason))
            continue
        name, text = item
        if looks_like_diff(text):
            shown = engine.safe_path(name)
            found += [c if c.path else dataclasses.replace(c, path=shown)
                      for c in engine.scan_diff(text)]  # fmt: skip
        else:
            found += engine.scan_text(text, name)
        if name != "stdin":
            found += engine.scan_path(name)
    return found


async def _verify(candidates: list[Any], revoke: bool) -> list[Any]:
    from scanners.response import LeakContext
    from worker.keystore.service import command_service
    from worker.response.leaks import LeakResponder
    from worker.settings import Settings

    settings = Settings.from_env()
    async with command_service(settings, redis=revoke, announce=revoke) as keys:
        responder = LeakResponder(keys, act=revoke, remember=revoke, actor="cli")
        return await responder.respond(candidates, LeakContext(source="cli"))


def finding_dict(finding: Any) -> dict[str, Any]:
    """One output record: the alert shape plus the candidate's column, encoding, checksum."""
    out: dict[str, Any] = dict(finding.candidate)
    out.update(finding.to_dict())
    out["message"] = out["summary"]
    out["revoked_now"] = finding.applied
    return out


def _action(row: dict[str, Any], revoke: bool) -> str:
    """What was done, in words: never "revoke" for a key that was not revoked."""
    if row["revoked_now"]:
        return "revoked"
    if row["action"] == "revoke":
        return "already revoked" if revoke else "would revoke (--revoke)"
    return str(row["action"])


def _table(rows: list[dict[str, Any]], revoke: bool = False) -> str:
    if not rows:
        return "no leaked keys found"
    head = ("STATUS", "ACTION", "RULE", "KEY", "KEY ID", "WHERE")
    lines = [head] + [
        (r["status"], _action(r, revoke), r["rule_id"], r["redacted"], r["key_id"] or "-",
         f"{r['path'] or '-'}:{r['line'] or '-'}"
         + (f" ({r['location'].replace('_', ' ')})" if r.get("location", "content") != "content"
            else ""))
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
    skipped: list[Skipped] = []

    def on_skip(skip: Skipped) -> None:
        skipped.append(skip)
        click.echo(f"keywatch scan: warning: not scanned: {skip.path}: {skip.reason}", err=True)

    try:
        from scanners.engine import Engine

        engine = Engine.from_file(Path(rules)) if rules else Engine.default()
        candidates = scan_inputs(engine, iter_inputs(paths, max_file_size), on_skip)
        findings = asyncio.run(_verify(candidates, revoke)) if candidates else []
    except (KeywatchError, OSError, UnicodeError) as exc:
        _fail(ctx, str(exc))
    rows = [finding_dict(f) for f in findings]
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row).decode())
        for skip in skipped:
            click.echo(orjson.dumps(skip.to_dict()).decode())
    elif sarif:
        from scanners.sarif import to_sarif

        notes = [skip.to_dict() for skip in skipped]
        doc = to_sarif(rows, __version__, notes)
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(_table(rows, revoke))
    if skipped:
        click.echo(f"keywatch scan: error: {len(skipped)} inputs could not be scanned", err=True)
        ctx.exit(2)
    ctx.exit(1 if any(f.verified for f in findings) else 0)


def _fail(ctx: click.Context, message: str) -> NoReturn:
    click.echo(f"keywatch scan: error: {message}", err=True)
    ctx.exit(2)

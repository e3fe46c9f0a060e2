"""The dev-stack handoff: ``keywatch dev`` writes ``.keywatch/dev/env``; other commands read it.

The file is shell syntax (``set -a; . .keywatch/dev/env; set +a`` works too) with a comment
naming the ``keywatch dev`` process that wrote it. A command run from the same directory takes
``KEYWATCH_BROKER``, ``KEYWATCH_DATABASE_URL`` and ``KEYWATCH_REDIS_URL`` from it when they are
unset, so a second terminal talks to the running stack. ``KEYWATCH_GATEWAY_LISTEN`` (where the
stack's gateway listens) is written for scripts and people, never loaded: a ``keywatch gateway``
started in a second terminal must not try to take the running one's port. A file left by a
stack that is no longer running is ignored (with one warning line): its broker and Redis are
gone.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, MutableMapping
from pathlib import Path

HANDOFF = Path(".keywatch/dev/env")
VARIABLES = ("KEYWATCH_BROKER", "KEYWATCH_DATABASE_URL", "KEYWATCH_REDIS_URL")
WRITTEN = (*VARIABLES, "KEYWATCH_GATEWAY_LISTEN")  # the last one informs, it is not loaded
_PID = re.compile(r"^# keywatch dev pid (\d+)$", re.M)


def write(path: Path, values: Mapping[str, str], pid: int | None = None) -> None:
    """Write the handoff file atomically (a reader never sees half of it)."""
    lines = [
        f"# keywatch dev pid {pid or os.getpid()}",
        "# Written by `keywatch dev`, removed when it stops. Other keywatch commands run from",
        "# this directory use these values when the variables are unset.",
        *(f"{name}={shlex.quote(values[name])}" for name in WRITTEN if values.get(name)),
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def read(path: Path) -> tuple[int | None, dict[str, str]]:
    """The writer's pid and the variables of a handoff file."""
    text = path.read_text(encoding="utf-8")
    found = _PID.search(text)
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        if sep and name in VARIABLES:
            parts = shlex.split(raw)
            values[name] = parts[0] if parts else ""
    return (int(found.group(1)) if found else None), values


def running(pid: int | None) -> bool:
    """Whether a process with ``pid`` exists (the dev stack that wrote the file)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def load(
    environ: MutableMapping[str, str], cwd: Path | None = None
) -> tuple[Path | None, str | None]:
    """Fill unset variables from a running stack's handoff file in ``cwd``.

    Returns the file used (or None) and a warning to show (a stale file), or None.
    """
    path = (cwd or Path.cwd()) / HANDOFF
    try:
        pid, values = read(path)
    except (OSError, UnicodeDecodeError, ValueError):
        return None, None
    if not running(pid):
        return None, (
            f"ignoring {HANDOFF}: the keywatch dev that wrote it (pid {pid}) is not running"
        )
    for name, value in values.items():
        if not environ.get(name):
            environ[name] = value
    return path, None

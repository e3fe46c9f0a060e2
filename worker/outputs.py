"""Output files are checked before the work starts: a missing directory is a one-line error
at once, not a traceback after a long replay."""

from __future__ import annotations

import os
from pathlib import Path

from core.errors import ConfigError


def check_writable(value: str | os.PathLike[str] | None, option: str) -> None:
    """Raise ConfigError (one line) unless ``value`` (``-``: stdout) can be written."""
    if value is None or str(value) == "-":
        return
    path = Path(value)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        problem = f"{path} is a directory"
    elif not parent.is_dir():
        problem = f"directory {parent} does not exist"
    elif not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        problem = f"{path} is not writable"
    else:
        return
    raise ConfigError(f"{option}: {problem}")

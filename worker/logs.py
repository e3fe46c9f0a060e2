"""Structured logging (structlog), with every event dict passed through the one redactor."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from worker.redaction import redact_obj


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    redacted: dict[str, Any] = redact_obj(event)
    return redacted


class _RedactingFilter(logging.Filter):
    """Redacts stdlib log records too (Faust, aiokafka, httpx log through logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_obj(record.getMessage())
        record.args = None
        return True


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # Resolve sys.stderr at use: tests and click swap it.
    return structlog.PrintLogger(sys.stderr)


def configure(level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.setLevel(lvl)
    for handler in root.handlers:
        handler.addFilter(_RedactingFilter())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_RedactingFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)

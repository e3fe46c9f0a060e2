"""Structured logging (structlog), with every event dict passed through the one redactor."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from core.redaction import redact_obj
from worker import brokerlog


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    redacted: dict[str, Any] = redact_obj(event)
    return redacted


_base_factory = logging.getLogRecordFactory()


def _redacting_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every stdlib record, redacted at creation: survives Faust replacing the log handlers."""
    record = _base_factory(*args, **kwargs)
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: keep both parts, redacted
        message = f"{record.msg} {record.args!r}"
    record.msg, record.args = redact_obj(message), ()  # a tuple: Faust's formatter maps args
    if record.exc_info and record.exc_info[1] is not None:
        # formatters reuse exc_text: a traceback's messages are redacted too
        record.exc_text = redact_obj(logging.Formatter().formatException(record.exc_info))
    return record


class _RedactingFilter(logging.Filter):
    """Redacts stdlib log records too (Faust, aiokafka, httpx log through logging)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_obj(record.getMessage())
        record.args = ()
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
    # Faust's worker installs its own handlers after this runs, so handler filters alone are
    # not enough: the record factory redacts every record whichever handler prints it.
    logging.setLogRecordFactory(_redacting_record)
    brokerlog.install()  # a gone broker is one line and a reminder a minute, not 150 a second
    root = logging.getLogger()
    root.setLevel(lvl)
    for handler in root.handlers:
        handler.addFilter(_RedactingFilter())
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_RedactingFilter())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        root.addHandler(handler)

"""The leak scanner's Faust app (a separate process): webhook intake -> ``code.push`` ->
fetch diffs -> scan -> verify by hash -> respond -> ``keywatch.leaks``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.base import KeywatchApp
from worker.settings import Settings


class ScannerApp(KeywatchApp):
    """The leak scanner."""

    def __init__(self, settings: Settings, **faust_extra: Any) -> None:
        super().__init__(
            settings, f"{settings.app_id}-scanner", settings.scanner_web_port, **faust_extra
        )
        t = settings.topics
        self.code_push_topic = self.app.topic(t.code_push, internal=True)
        self.leaks_topic = self.app.topic(t.leaks, internal=True)
        for register in scanner_registrations():
            register(self)


def scanner_registrations() -> list[Callable[[ScannerApp], None]]:
    """The scanner's agents and web routes, listed explicitly."""
    from worker.agents.scanner import registrations

    return registrations()

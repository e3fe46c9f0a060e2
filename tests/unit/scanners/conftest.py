"""Shared fixtures for the scanner tests."""

from __future__ import annotations

import pytest

from scanners.engine import Engine


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The default engine (rules loaded once per session)."""
    return Engine.default()

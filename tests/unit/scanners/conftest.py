"""Shared fixtures for the scanner tests."""

from __future__ import annotations

import pytest

from scanners.engine import Engine
from scanners.prefilter import hyperscan_available

# Every engine test runs with each prefilter this machine has (Hyperscan where it is installed).
PREFILTERS = ["aho-corasick"] + (["hyperscan"] if hyperscan_available() else [])


@pytest.fixture(scope="session", params=PREFILTERS)
def engine(request: pytest.FixtureRequest) -> Engine:
    """The default rules with each prefilter (built once per session)."""
    return Engine.default(prefilter=request.param)

"""``transport.second_key``: the ingest found another key besides the authenticated one."""

from __future__ import annotations

import pytest

from detectors import second_key
from detectors.config import DetectorConfig, EvalContext
from detectors.model import AccessEvent, Signal
from detectors.profile import KeyProfile
from detectors.registry import detector_types
from detectors.summary import phrase

OTHER = "ab" * 32


@pytest.mark.parametrize("extra, fires", [(OTHER, True), (None, False)])
def test_second_key(extra: str | None, fires: bool) -> None:
    ev = AccessEvent(1795000000.0, "k1", "81.2.69.160", "GET", "/v1/x?api_key=REDACTED",
                     extra_key_hash=extra)  # fmt: skip
    out = second_key.evaluate(ev, KeyProfile(), EvalContext(DetectorConfig()))
    assert bool(out) == fires
    if out:
        (sig,) = out
        assert (sig.type, sig.severity) == ("transport.second_key", "medium")
        assert sig.evidence["other_key_sha256_prefix"] == OTHER[:12]
        assert sig.evidence["path"] == "/v1/x"


def test_registered_and_summarised() -> None:
    assert "transport.second_key" in detector_types()
    assert "second" in phrase(Signal("transport.second_key", "medium", {}))

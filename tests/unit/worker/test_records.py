"""Records across a rolling deploy: the previous release's layouts decode, and the append-only
convention of worker.records works in both directions."""

from __future__ import annotations

from pathlib import Path

import msgspec
import orjson
import pytest

from detectors.profile import KeyProfile
from worker.records import decoder, encode

V1 = Path(__file__).resolve().parents[2] / "fixtures" / "records_v1"
EXPECTED = orjson.loads((V1 / "expected.json").read_bytes())


@pytest.mark.parametrize("name", ["learned", "learning", "incident"])
def test_profiles_of_the_previous_release_decode(name: str) -> None:
    """Changelog records written by release 352d19b come back with what they held."""
    want = EXPECTED[f"profile_{name}"]
    profile = KeyProfile.from_bytes((V1 / f"profile_{name}.bin").read_bytes())
    assert profile.learned is want["learned"]
    assert profile.total_events == want["total_events"]
    assert sorted(profile.countries) == want["countries"]
    assert sorted(profile.incidents) == want["incidents"]
    assert (profile.first_ts, profile.last_ts) == (want["first_ts"], want["last_ts"])
    again = KeyProfile.from_bytes(profile.to_bytes())  # and survive the next write
    assert again.total_events == want["total_events"]


class PointV1(msgspec.Struct, array_like=True):
    """A record as one release writes it."""

    version: int
    x: float


class PointV2(msgspec.Struct, array_like=True):
    """The next release: one field appended, with a default."""

    version: int
    x: float
    label: str = ""


def test_a_new_reader_fills_defaults_for_an_old_writer() -> None:
    assert decoder(PointV2).decode(encode(PointV1(1, 2.5))) == PointV2(1, 2.5, "")


def test_an_old_reader_ignores_what_a_new_writer_appended() -> None:
    assert decoder(PointV1).decode(encode(PointV2(1, 2.5, "new"))) == PointV1(1, 2.5)


def test_a_moved_or_retyped_field_is_an_error_not_a_silent_misread() -> None:
    with pytest.raises(msgspec.ValidationError):
        decoder(PointV1).decode(encode(("1", 2.5)))

"""Bounded line reading: over-long lines are reported and skipped without being held whole."""

from __future__ import annotations

import gzip
import io
import tracemalloc
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from worker.commands.replay import command
from worker.lines import bounded_lines


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"a\nbb\n", [b"a\n", b"bb\n"]),
        (b"a\nbb", [b"a\n", b"bb"]),
        (b"12345\n", [b"12345\n"]),  # exactly the limit plus its newline
        (b"123456\nok\n", [None, b"ok\n"]),
        (b"x" * 100 + b"\nok", [None, b"ok"]),
        (b"x" * 100, [None]),
        (b"", []),
    ],
)
def test_bounded_lines(data: bytes, expected: list[bytes | None]) -> None:
    assert list(bounded_lines(io.BytesIO(data), 5)) == expected


def test_replay_of_a_one_line_gzip_bomb_stays_small(tmp_path: Path) -> None:
    good = orjson.dumps({"ts": 1794000000000, "key_id": "k1", "ip": "198.51.100.7"}) + b"\n"
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        f.write(good)
        chunk = b"A" * (1024 * 1024)
        for _ in range(64):  # one 64 MB line, a few hundred KB compressed
            f.write(chunk)
        f.write(b"\n" + good)
    tracemalloc.start()
    result = CliRunner().invoke(
        command, [str(bomb)], env={"KEYWATCH_DATABASE_URL": "", "KEYWATCH_POLICY": ""}
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert "line_too_long 1" in result.output
    assert peak < 40 * 1024 * 1024, f"peak {peak / 1e6:.0f} MB"

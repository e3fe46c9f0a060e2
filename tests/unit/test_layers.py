"""The layers hold: core imports no other keywatch package; detectors/ imports core (and the
analyzer the GeoIP resolver it is handed), never the worker; scanners/ and geoip/ import core
and the pure detectors (shared value types), never the worker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGES = ("core", "worker", "detectors", "scanners", "geoip", "gateway")
ALLOWED = {"core": {"core"}, "detectors": {"core", "detectors", "geoip"},
           "scanners": {"core", "scanners", "detectors"},
           "geoip": {"core", "geoip", "detectors"}}  # fmt: skip


def imported(path: Path) -> set[str]:
    """The top-level keywatch packages a module imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_its_layers(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(ROOT)): sorted(imported(f) - ALLOWED[package]) for f in files}
    assert {f: w for f, w in wrong.items() if w} == {}

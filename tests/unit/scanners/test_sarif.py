"""SARIF 2.1.0 output."""

from __future__ import annotations

import json

from core.keyformat import generate_key
from scanners.engine import Engine
from scanners.sarif import to_sarif


def _findings(engine: Engine) -> tuple[str, list[dict[str, object]]]:
    key = generate_key().secret
    text = f"a\nKEY={key}\nTOKEN=ghp_Q7hZ2mKpL9vX4cR8tYw3Nb6Fs1Dg5Jk0Ue7A\n"
    findings = []
    for cand in engine.scan_text(text, path="conf/.env"):
        finding = cand.to_dict()
        finding.update(status="active", severity="critical", message=f"Leaked {cand.redacted}")
        findings.append(finding)
    return key, findings


def test_sarif_structure(engine: Engine) -> None:
    _key, findings = _findings(engine)
    log = to_sarif(findings, tool_version="0.1.0")
    assert log["version"] == "2.1.0"
    assert str(log["$schema"]).endswith("sarif-2.1.0.json")
    (run,) = log["runs"]  # type: ignore[misc]
    driver = run["tool"]["driver"]
    assert driver["name"] == "keywatch" and driver["version"] == "0.1.0"
    assert [r["id"] for r in driver["rules"]] == ["keywatch-api-key", "github-token"]
    first, second = run["results"]
    assert first["ruleId"] == "keywatch-api-key" and first["ruleIndex"] == 0
    assert second["ruleIndex"] == 1 and first["level"] == "error"
    loc = first["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"] == "conf/.env"
    assert loc["region"] == {"startLine": 2, "startColumn": 5}
    assert first["partialFingerprints"]["keywatchKeyHash/v1"] == findings[0]["key_hash"]
    assert first["properties"]["status"] == "active"


def test_sarif_never_contains_a_secret(engine: Engine) -> None:
    key, findings = _findings(engine)
    findings[0]["message"] = f"oops the key {key} slipped into a message"
    text = json.dumps(to_sarif(findings, "0.1.0"))
    assert key not in text and key[8:] not in text
    assert "ghp_Q7hZ2mKpL9vX4cR8tYw3Nb6Fs1Dg5Jk0Ue7A" not in text


def test_sarif_tolerates_sparse_findings() -> None:
    log = to_sarif([{"rule_id": "x", "line": "7", "column": True}], "1")
    result = log["runs"][0]["results"][0]  # type: ignore[index]
    assert result["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": "stdin"}}
    assert to_sarif([], "1")["runs"][0]["results"] == []  # type: ignore[index]

"""SARIF 2.1.0 output for code-scanning tools (GitHub code scanning, IDEs).

Built from finding dicts (never from secrets): ``rule_id``, ``path``, ``line``, ``column``,
``redacted``, ``status``, ``severity``, ``message`` and, when present, ``key_hash`` (used as the
partial fingerprint so a tool tracks one leaked key across runs). Every string is passed through
``core.redaction.redact_text`` as a last guard.
ref: https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import quote

from core.redaction import redact_text

SARIF_VERSION: Final = "2.1.0"
SARIF_SCHEMA: Final = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME: Final = "keywatch"
# SARIF result levels: error | warning | note | none (§3.27.10).
_LEVELS: Final = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
# GitHub code scanning reads rule security-severity as a CVSS-like score.
_SCORES: Final = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}


def _text(value: object, default: str = "") -> str:
    return redact_text(str(value)) if value is not None else default


def _uri(path: object) -> str:
    """A relative URI reference for a path (§3.4.3): percent-encoded; stdin when unnamed."""
    text = _text(path, "stdin") or "stdin"
    return quote(text.replace("\\", "/"), safe="/:@!$&'()*+,;=-._~")


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _rule(rule_id: str, severity: str) -> dict[str, object]:
    return {
        "id": rule_id,
        "name": rule_id,
        "shortDescription": {"text": f"Leaked secret ({rule_id})"},
        "defaultConfiguration": {"level": _LEVELS.get(severity, "warning")},
        "properties": {
            "tags": ["security", "secret"],
            "security-severity": _SCORES.get(severity, "5.5"),
        },
    }


def _location(finding: Mapping[str, object]) -> dict[str, object]:
    region: dict[str, object] = {}
    line, column = _int(finding.get("line")), _int(finding.get("column"))
    if line is not None:
        region["startLine"] = line
    if column is not None:
        region["startColumn"] = column
    physical: dict[str, object] = {"artifactLocation": {"uri": _uri(finding.get("path"))}}
    if region:
        physical["region"] = region
    return {"physicalLocation": physical}


def _result(finding: Mapping[str, object], rule_index: int) -> dict[str, object]:
    severity = _text(finding.get("severity"), "medium")
    redacted = _text(finding.get("redacted"))
    message = _text(finding.get("message")) or f"Leaked secret {redacted}"
    result: dict[str, object] = {
        "ruleId": _text(finding.get("rule_id"), "unknown"),
        "ruleIndex": rule_index,
        "level": _LEVELS.get(severity, "warning"),
        "message": {"text": message},
        "locations": [_location(finding)],
        "properties": {
            "redacted": redacted,
            "status": _text(finding.get("status"), "unknown"),
            "severity": severity,
        },
    }
    key_hash = finding.get("key_hash")
    if isinstance(key_hash, str) and key_hash:
        result["partialFingerprints"] = {"keywatchKeyHash/v1": key_hash}
    return result


def _notification(note: Mapping[str, object]) -> dict[str, object]:
    """An input that could not be scanned, as a tool execution notification (§3.58)."""
    return {
        "level": "warning",
        "message": {"text": f"not scanned: {_text(note.get('reason'), 'unknown reason')}"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(note.get("path"))}}}],
    }


def to_sarif(
    findings: Sequence[Mapping[str, object]],
    tool_version: str,
    notifications: Sequence[Mapping[str, object]] = (),
) -> dict[str, object]:
    """A SARIF 2.1.0 log with one run holding every finding (and every input not scanned)."""
    rules: list[dict[str, object]] = []
    index: dict[str, int] = {}
    results = []
    for finding in findings:
        rule_id = _text(finding.get("rule_id"), "unknown")
        if rule_id not in index:
            index[rule_id] = len(rules)
            rules.append(_rule(rule_id, _text(finding.get("severity"), "medium")))
        results.append(_result(finding, index[rule_id]))
    driver = {
        "name": TOOL_NAME,
        "version": tool_version,
        "rules": rules,
    }
    invocation = {
        "executionSuccessful": not notifications,
        "toolExecutionNotifications": [_notification(n) for n in notifications],
    }
    return {
        "version": SARIF_VERSION,
        "$schema": SARIF_SCHEMA,
        "runs": [{"tool": {"driver": driver}, "invocations": [invocation], "results": results}],
    }

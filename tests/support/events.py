"""What tests send keywatch: gateway access-log entries and alerts."""

from __future__ import annotations

from typing import Any


def kong(ts: float, key_id: str, ip: str, path: str = "/v1/users") -> dict[str, Any]:
    """A Kong ``kafka-log`` entry as ``kong.log.serialize()`` emits it (fields keywatch reads)."""
    return {
        "started_at": int(ts * 1000),
        "client_ip": ip,
        "request": {"method": "GET", "uri": path, "headers": {"user-agent": "sdk/1.0"}},
        "response": {"status": 200},
        "authenticated_entity": {"id": key_id},
        "consumer": {"custom_id": "acme"},
        "service": {"name": "users"},
    }


def anomaly_alert(
    key_id: str, alert_id: str, action: str = "revoke", **fields: Any
) -> dict[str, Any]:
    """A critical anomaly alert (contract shape) asking for ``action`` on ``key_id``; ``fields``
    replace or add to it."""
    return {
        "id": alert_id, "kind": "anomaly", "key_id": key_id, "account_id": "acme",
        "ts": "2026-11-22T03:04:05.123Z", "detected_at": "2026-11-22T03:04:05.412Z",
        "severity": "critical", "action": action,
        "signals": [{"type": "geo.new_country", "severity": "high", "evidence": {"country": "RU"}}],
        "summary": f"Key {key_id} used from RU (new)",
    } | fields  # fmt: skip

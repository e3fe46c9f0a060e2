"""Typed settings, built once from the environment and passed in (never a global).

Every variable of the public contract is here with its default; ``Settings.from_env`` validates
them all and raises one ``ConfigError`` listing one line per bad value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.errors import ConfigError
from worker.ingest.ips import TrustedProxies, parse_trusted

DEFAULT_BROKER = "kafka://localhost:9092"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
GITHUB_META_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"


@dataclass(frozen=True, slots=True)
class Topics:
    """Kafka topic names (configurable; these are the contract's defaults)."""

    access: str = "gateway.access"
    alerts: str = "keywatch.alerts"
    key_actions: str = "keywatch.key-actions"
    code_push: str = "code.push"
    leaks: str = "keywatch.leaks"
    dead_letter: str = "keywatch.dead-letter"
    # Verdicts on alerts (benign/compromised), keyed by key id, co-partitioned with the profiles.
    feedback: str = "keywatch.feedback"
    # Internal: events re-keyed by key id, co-partitioned with the profile table.
    events_by_key: str = "keywatch.events-by-key"


def _url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise ValueError("not a URL")
    return value


def _http_url(value: str) -> str:
    if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise ValueError("must be an http(s) URL")
    return value


def _broker(value: str) -> str:
    for part in value.split(";"):
        scheme = urlsplit(part.strip()).scheme
        if scheme not in ("kafka", "aiokafka"):
            raise ValueError("must be kafka://host:port (several separated by ';')")
    return value


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError("must be a TCP port (0-65535)")
    return port


def _positive_int(value: str) -> int:
    n = int(value)
    if n <= 0:
        raise ValueError("must be a positive integer")
    return n


def _count(value: str) -> int:
    n = int(value)
    if n < 0:
        raise ValueError("must be 0 or more")
    return n


def _positive_float(value: str) -> float:
    x = float(value)
    if not x > 0:
        raise ValueError("must be a positive number")
    return x


def _non_negative_float(value: str) -> float:
    x = float(value)
    if not x >= 0:
        raise ValueError("must be 0 or more")
    return x


def _existing_file(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _bool(value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _log_level(value: str) -> str:
    up = value.upper()
    if up not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return up


def _seal_mode(value: str) -> str:
    low = value.strip().lower()
    if low not in ("auto", "on", "off"):
        raise ValueError("must be auto, on or off")
    return low


def _whsec(value: str) -> str:
    if not value.startswith("whsec_"):
        raise ValueError("must be a Standard Webhooks secret (whsec_…)")
    return value


# (field name, environment variable, parser); fields absent here are not environment-driven.
_ENV: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    ("broker", "KEYWATCH_BROKER", _broker),
    ("database_url", "KEYWATCH_DATABASE_URL", _url),
    ("redis_url", "KEYWATCH_REDIS_URL", _url),
    ("geoip_city_db", "KEYWATCH_GEOIP_CITY_DB", _existing_file),
    ("geoip_asn_db", "KEYWATCH_GEOIP_ASN_DB", _existing_file),
    ("network_classes", "KEYWATCH_NETWORK_CLASSES", _existing_file),
    ("policy_file", "KEYWATCH_POLICY", _existing_file),
    ("web_port", "KEYWATCH_WEB_PORT", _port),
    ("scanner_web_port", "KEYWATCH_SCANNER_WEB_PORT", _port),
    ("web_host", "KEYWATCH_WEB_HOST", str),
    ("slack_webhook_url", "KEYWATCH_SLACK_WEBHOOK_URL", _http_url),
    ("slack_signing_secret", "KEYWATCH_SLACK_SIGNING_SECRET", str),
    ("incident_idle_s", "KEYWATCH_INCIDENT_IDLE_S", _positive_float),
    ("webhook_url", "KEYWATCH_WEBHOOK_URL", _http_url),
    ("webhook_secret", "KEYWATCH_WEBHOOK_SECRET", _whsec),
    ("pagerduty_routing_key", "KEYWATCH_PAGERDUTY_ROUTING_KEY", str),
    ("pagerduty_url", "KEYWATCH_PAGERDUTY_URL", _http_url),
    ("github_api_url", "KEYWATCH_GITHUB_API_URL", _http_url),
    ("github_token", "KEYWATCH_GITHUB_TOKEN", str),
    ("github_webhook_secret", "KEYWATCH_GITHUB_WEBHOOK_SECRET", str),
    ("github_secret_scanning_keys_url", "KEYWATCH_GITHUB_SECRET_SCANNING_KEYS_URL", _http_url),
    ("gitlab_url", "KEYWATCH_GITLAB_URL", _http_url),
    ("gitlab_token", "KEYWATCH_GITLAB_TOKEN", str),
    ("gitlab_webhook_secret", "KEYWATCH_GITLAB_WEBHOOK_SECRET", str),
    ("partitions", "KEYWATCH_PARTITIONS", _positive_int),
    ("replication_factor", "KEYWATCH_REPLICATION_FACTOR", _positive_int),
    ("flush_interval_s", "KEYWATCH_FLUSH_INTERVAL_S", _positive_float),
    ("batch_max_events", "KEYWATCH_BATCH_MAX_EVENTS", _positive_int),
    ("reorder_lateness_s", "KEYWATCH_REORDER_LATENESS_S", _non_negative_float),
    ("reorder_idle_s", "KEYWATCH_REORDER_IDLE_S", _non_negative_float),
    ("reorder_max_hold_s", "KEYWATCH_REORDER_MAX_HOLD_S", _non_negative_float),
    ("standby_replicas", "KEYWATCH_STANDBY_REPLICAS", _count),
    ("worker_processes", "KEYWATCH_WORKER_PROCESSES", _count),
    ("data_dir", "KEYWATCH_DATA_DIR", Path),
    ("session_timeout_s", "KEYWATCH_SESSION_TIMEOUT_S", _positive_float),
    ("fetch_max_wait_ms", "KEYWATCH_FETCH_MAX_WAIT_MS", _positive_int),
    ("producer_timeout_s", "KEYWATCH_PRODUCER_TIMEOUT_S", _positive_float),
    ("changelog_seal", "KEYWATCH_CHANGELOG_SEAL", _seal_mode),
    ("log_level", "KEYWATCH_LOG_LEVEL", _log_level),
    ("dry_run", "KEYWATCH_DRY_RUN", _bool),
    ("max_body_bytes", "KEYWATCH_MAX_BODY_BYTES", _positive_int),
    ("max_message_bytes", "KEYWATCH_MAX_MESSAGE_BYTES", _positive_int),
    ("max_message_events", "KEYWATCH_MAX_MESSAGE_EVENTS", _positive_int),
    ("trusted_proxies", "KEYWATCH_TRUSTED_PROXIES", parse_trusted),
    ("scan_budget_s", "KEYWATCH_SCAN_BUDGET_S", _positive_float),
    ("webhook_body_timeout_s", "KEYWATCH_WEBHOOK_BODY_TIMEOUT_S", _positive_float),
    ("webhook_header_timeout_s", "KEYWATCH_WEBHOOK_HEADER_TIMEOUT_S", _positive_float),
    ("max_pending_bodies", "KEYWATCH_MAX_PENDING_BODIES", _positive_int),
    ("app_id", "KEYWATCH_APP_ID", str),
    ("broker_wait_s", "KEYWATCH_BROKER_WAIT_S", _non_negative_float),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a keywatch process needs to know, validated."""

    broker: str = DEFAULT_BROKER
    database_url: str = "sqlite:///keywatch.db"
    redis_url: str | None = None
    geoip_city_db: Path | None = None  # None: the maxminddb-geolite2 database
    geoip_asn_db: Path | None = None
    network_classes: Path | None = None  # ASN -> network class table; None: geoip's shipped one
    policy_file: Path | None = None
    web_port: int = 6066
    scanner_web_port: int = 6067
    web_host: str = "127.0.0.1"
    slack_webhook_url: str | None = None
    slack_signing_secret: str | None = None  # verifies POST /slack/interactions
    incident_idle_s: float = 6 * 3600.0  # an open incident without an alert this long expires
    webhook_url: str | None = None
    webhook_secret: str | None = None
    pagerduty_routing_key: str | None = None
    pagerduty_url: str = PAGERDUTY_EVENTS_URL
    github_api_url: str = "https://api.github.com"
    github_token: str | None = None
    github_webhook_secret: str | None = None
    github_secret_scanning_keys_url: str = GITHUB_META_KEYS_URL
    gitlab_url: str = "https://gitlab.com"
    gitlab_token: str | None = None
    gitlab_webhook_secret: str | None = None
    partitions: int = 8
    replication_factor: int = 1
    flush_interval_s: float = 0.05
    batch_max_events: int = 2000
    # Event-time order in the profile stage (worker.reorder): how far one source may run out of
    # its own order, how long a silent source holds its partition, and the most any event waits.
    reorder_lateness_s: float = 0.0
    reorder_idle_s: float = 2.0
    reorder_max_hold_s: float = 30.0
    standby_replicas: int = 1  # Faust's default: each table partition kept warm on one more worker
    worker_processes: int = 0  # processes of `keywatch worker`; 0: one per core (worker.supervisor)
    data_dir: Path = Path(".keywatch")
    session_timeout_s: float = 10.0
    # Long-poll bound of every consumer. Kafka answers a fetch as soon as data arrives; the
    # embedded Tansu broker only at this deadline, so it bounds each idle hop's latency there.
    fetch_max_wait_ms: int = 100
    # Every request of the worker's producer (produce and metadata) gives up after this long and
    # is retried. Faust's default is 20 minutes: one metadata request the embedded broker never
    # answered stalled every send of the process (events, alerts, changelog) for that long, in
    # silence. 30 s is Kafka's own request.timeout.ms default.
    producer_timeout_s: float = 30.0
    # Seal each non-empty changelog partition before recovery reads its end offset (see
    # worker.engine.seal_before_recovery): "auto" does it on Tansu only, which under-reports
    # end offsets after batched produces; Kafka reports them right.
    changelog_seal: str = "auto"
    log_level: str = "INFO"
    dry_run: bool = False
    max_body_bytes: int = 25 * 1024 * 1024
    # Work bounds of one gateway.access message: larger ones are dead-lettered whole.
    max_message_bytes: int = 8 * 1024 * 1024
    max_message_events: int = 10_000
    # Proxies whose X-Forwarded-For entries are believed (default: private addresses).
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    scan_budget_s: float = 30.0  # per push; the rest is scanned in the background
    webhook_body_timeout_s: float = 30.0  # a webhook body must arrive within this
    webhook_header_timeout_s: float = 10.0  # a connection must send its headers within this
    max_pending_bodies: int = 8  # webhook bodies read at once before they are authenticated
    app_id: str = "keywatch"
    # How long `keywatch worker`/`scanner` wait for the broker at start; 0: forever (containers).
    broker_wait_s: float = 60.0
    topics: Topics = field(default_factory=Topics)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); explicit overrides win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, var, parse in _ENV:
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = parse(raw)
            except (ValueError, TypeError) as exc:
                problems.append(f"{var}={_shown(var, raw)}: {exc}")
        topic_values = {
            f.name: env[f"KEYWATCH_TOPIC_{f.name.upper()}"]
            for f in fields(Topics)
            if env.get(f"KEYWATCH_TOPIC_{f.name.upper()}")
        }
        if topic_values:
            values["topics"] = Topics(**topic_values)
        if values.get("webhook_url") and not env.get("KEYWATCH_WEBHOOK_SECRET"):
            problems.append("KEYWATCH_WEBHOOK_URL is set but KEYWATCH_WEBHOOK_SECRET is not")
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some values changed."""
        return replace(self, **changes)

    @property
    def broker_urls(self) -> list[str]:
        """The broker as aiokafka bootstrap servers (``host:port``)."""
        return [urlsplit(u.strip()).netloc for u in self.broker.split(";")]


def _shown(var: str, raw: str) -> str:
    """Never echo secrets back in an error line."""
    if any(word in var for word in ("TOKEN", "SECRET", "ROUTING_KEY")):
        return "<hidden>"
    return repr(raw if len(raw) < 80 else raw[:77] + "...")

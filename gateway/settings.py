"""Gateway settings: typed, built once from the environment (on top of ``worker.settings``)."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError, KeyStoreError
from worker.ingest.ips import TrustedProxies
from worker.keystore.ratelimits import RateLimit, parse_limits
from worker.settings import Settings
from worker.settings import _positive_float as positive_float

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_LISTEN = "127.0.0.1:6068"
# Keys without limits of their own get this one, so every 200 carries X-RateLimit-*: generous
# (a busy service account stays under it), yet a stolen key cannot hammer the API unbounded.
DEFAULT_KEY_LIMIT = "1000/minute"


@dataclass(frozen=True, slots=True)
class EndpointLimit:
    """Per-key limits on one route: ``method`` ("*" for any) and a path prefix."""

    name: str
    method: str
    path_prefix: str
    limits: tuple[RateLimit, ...]

    def matches(self, method: str, path: str) -> bool:
        """Whether a request falls on this endpoint."""
        return (self.method in ("*", method)) and path.startswith(self.path_prefix)


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """Everything ``keywatch gateway`` and ``KeywatchMiddleware`` need, validated."""

    base: Settings = field(default_factory=Settings)
    listen: str = DEFAULT_LISTEN
    fail_mode: str = "closed"  # for keys that can be checked nowhere (no cache, Redis, SQL)
    cache_ttl_s: float = 5.0  # positive entries; pub/sub and key-actions evict sooner
    # Past this a Redis call counts as down: the replica serves from its cache and counts limits
    # on its own until Redis answers again (a request is never held longer than this).
    redis_timeout_s: float = 0.5
    negative_ttl_s: float = 10.0  # unknown keys: a burst of bad keys costs one SQL query each
    cache_size: int = 100_000
    view_ttl_s: int = 300  # how long the gateway's apikey:{hash} copy lives in Redis
    throttle_limit: RateLimit | None = None  # None: a throttled key is refused outright
    default_limits: tuple[RateLimit, ...] = field(
        default_factory=lambda: parse_limits([DEFAULT_KEY_LIMIT])
    )  # for keys with no limits of their own
    account_limits: Mapping[str, tuple[RateLimit, ...]] = field(default_factory=dict)
    default_account_limits: tuple[RateLimit, ...] = ()
    endpoints: tuple[EndpointLimit, ...] = ()
    buffer_events: int = 10_000
    batch_events: int = 500
    flush_interval_s: float = 0.2
    touch_interval_s: float = 30.0
    name: str = "keywatch-gateway"
    check_prefix: str = "/authz"
    follow_kafka: bool = True  # follow keywatch.key-actions (besides the Redis channel)
    publish: bool = True  # publish decisions to gateway.access

    @property
    def trusted(self) -> TrustedProxies:
        """Whose ``X-Forwarded-For`` entries are believed: the worker's one setting
        (``KEYWATCH_TRUSTED_PROXIES``, default ``private``), parsed by ``worker.ingest.ips``."""
        return self.base.trusted_proxies

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> GatewaySettings:
        """Build from ``env`` (default ``os.environ``); explicit overrides win."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        problems: list[str] = []
        try:
            values["base"] = Settings.from_env(env)
        except ConfigError as exc:  # listed together with the gateway's own problems
            problems.extend(line.strip() for line in str(exc).splitlines()[1:])
        for var, name, parse in _ENV:
            raw = env.get(var)
            if raw:
                try:
                    values[name] = parse(raw)
                except (ValueError, KeyStoreError, OSError, tomllib.TOMLDecodeError) as exc:
                    problems.append(f"{var}={raw!r}: {exc}")
        limits_file = env.get("KEYWATCH_GATEWAY_LIMITS")
        if limits_file:
            try:
                values.update(load_limits(Path(limits_file)))
            except (ValueError, KeyStoreError, OSError, tomllib.TOMLDecodeError) as exc:
                problems.append(f"KEYWATCH_GATEWAY_LIMITS={limits_file!r}: {exc}")
        if problems:
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        values.update(overrides)
        return cls(**values)


def parse_listen(value: str) -> str:
    """``HOST:PORT`` (IPv6 hosts in brackets)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be HOST:PORT")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``("host", port)`` from ``HOST:PORT``."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _fail_mode(value: str) -> str:
    if value not in ("open", "closed"):
        raise ValueError("must be open or closed")
    return value


def _default_limits(value: str) -> tuple[RateLimit, ...]:
    limits = parse_limits(p for p in value.split(",") if p.strip())
    if not limits or any(lim.limit < 1 for lim in limits):
        raise ValueError("must be one or more N/second|minute|hour|day with N >= 1")
    return limits


def _throttle_limit(value: str) -> RateLimit | None:
    limits = parse_limits([value])
    return limits[0] if limits and limits[0].limit > 0 else None


def load_limits(path: Path) -> dict[str, Any]:
    """Account and endpoint limits from TOML (see the README, "Gateway")."""
    data = tomllib.loads(path.read_text())
    accounts = {str(name): parse_limits(specs) for name, specs in data.get("accounts", {}).items()}
    default = accounts.pop("*", ())
    endpoints = tuple(
        EndpointLimit(
            name=str(e.get("name") or f"{e.get('method', '*')} {e['path']}"),
            method=str(e.get("method", "*")).upper(),
            path_prefix=str(e["path"]),
            limits=parse_limits(e["rate_limit"]),
        )
        for e in data.get("endpoints", [])
    )
    return {"account_limits": accounts, "default_account_limits": default, "endpoints": endpoints}


_ENV: tuple[tuple[str, str, Any], ...] = (
    ("KEYWATCH_GATEWAY_LISTEN", "listen", parse_listen),
    ("KEYWATCH_GATEWAY_FAIL_MODE", "fail_mode", _fail_mode),
    ("KEYWATCH_GATEWAY_CACHE_TTL_S", "cache_ttl_s", positive_float),
    ("KEYWATCH_GATEWAY_REDIS_TIMEOUT_S", "redis_timeout_s", positive_float),
    ("KEYWATCH_GATEWAY_NEGATIVE_TTL_S", "negative_ttl_s", positive_float),
    ("KEYWATCH_GATEWAY_THROTTLE_LIMIT", "throttle_limit", _throttle_limit),
    ("KEYWATCH_GATEWAY_DEFAULT_LIMIT", "default_limits", _default_limits),
    ("KEYWATCH_GATEWAY_BUFFER", "buffer_events", int),
    ("KEYWATCH_GATEWAY_NAME", "name", str),
    ("KEYWATCH_GATEWAY_CHECK_PREFIX", "check_prefix", str),
)

"""Gateway settings from the environment: one line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from gateway.settings import GatewaySettings


def test_defaults_and_values(tmp_path: Path) -> None:
    limits = tmp_path / "limits.toml"
    limits.write_text(
        '[accounts]\nacme = ["100/second"]\n"*" = ["10/second"]\n'
        '[[endpoints]]\nmethod = "post"\npath = "/v1/orders"\nrate_limit = ["2/second"]\n'
    )
    s = GatewaySettings.from_env({
        "KEYWATCH_GATEWAY_FAIL_MODE": "open", "KEYWATCH_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
        "KEYWATCH_GATEWAY_LIMITS": str(limits), "KEYWATCH_GATEWAY_THROTTLE_LIMIT": "1/second",
    })  # fmt: skip
    assert GatewaySettings.from_env({}).listen == "127.0.0.1:6068"
    assert GatewaySettings.from_env({}).fail_mode == "closed"
    assert s.fail_mode == "open" and s.trusted.trusts("10.2.3.4") and s.trusted.trusts("::1")
    assert s.account_limits["acme"][0].limit == 100
    assert s.default_account_limits[0].limit == 10
    assert s.endpoints[0].matches("POST", "/v1/orders/7")
    assert not s.endpoints[0].matches("GET", "/v1/orders")
    assert s.throttle_limit is not None and s.throttle_limit.window_s == 1
    default = GatewaySettings.from_env({}).default_limits
    assert [(lim.limit, lim.window_s) for lim in default] == [(1000, 60)]
    both = GatewaySettings.from_env({"KEYWATCH_GATEWAY_DEFAULT_LIMIT": "10/second, 500/hour"})
    assert [(lim.limit, lim.window_s) for lim in both.default_limits] == [(10, 1), (500, 3600)]


def test_bad_values_are_listed() -> None:
    with pytest.raises(ConfigError) as exc:
        GatewaySettings.from_env({
            "KEYWATCH_GATEWAY_FAIL_MODE": "maybe", "KEYWATCH_GATEWAY_LISTEN": "nowhere",
            "KEYWATCH_TRUSTED_PROXIES": "10.0.0.300/8",
            "KEYWATCH_GATEWAY_DEFAULT_LIMIT": "0/minute",
        })  # fmt: skip
    text = str(exc.value)
    assert "KEYWATCH_GATEWAY_DEFAULT_LIMIT" in text
    assert "KEYWATCH_GATEWAY_FAIL_MODE" in text and "KEYWATCH_GATEWAY_LISTEN" in text
    assert "KEYWATCH_TRUSTED_PROXIES" in text


def test_taken_port_is_a_config_error() -> None:
    import socket

    from gateway.service import bind

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()

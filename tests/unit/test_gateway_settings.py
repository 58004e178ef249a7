"""The gateway's settings: defaults, and a clear message for each unusable value."""

from __future__ import annotations

import ipaddress

import pytest

from safiri_gateway.settings import Settings
from safiri_telemetry import ConfigError

KEYS = {"SAFIRI_API_KEYS": "alpha-key, beta-key"}


def test_defaults_serve_on_loopback_next_to_ticketing() -> None:
    settings = Settings.from_env(KEYS)
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.ticketing_url == "http://127.0.0.1:8081"
    assert settings.database_url.endswith("@127.0.0.1:5432/safiri_gateway")
    assert settings.upstream_timeout == 3.0
    assert [key.value for key in settings.api_keys] == ["alpha-key", "beta-key"]


def test_ticketing_is_found_on_its_own_port_setting() -> None:
    settings = Settings.from_env({**KEYS, "SAFIRI_TICKETING_PORT": "9181"})
    assert settings.ticketing_url == "http://127.0.0.1:9181"
    explicit = Settings.from_env({**KEYS, "SAFIRI_TICKETING_URL": "http://ticketing:8081/"})
    assert explicit.ticketing_url == "http://ticketing:8081/"


def test_api_keys_never_print() -> None:
    settings = Settings.from_env(KEYS)
    assert "alpha-key" not in repr(settings)
    assert "alpha-key" not in str(settings.api_keys)


@pytest.mark.parametrize("raw", [None, "", " , ,"])
def test_the_gateway_refuses_to_start_without_api_keys(raw: str | None) -> None:
    env = {} if raw is None else {"SAFIRI_API_KEYS": raw}
    with pytest.raises(ConfigError, match="SAFIRI_API_KEYS is not set"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAFIRI_GATEWAY_PORT", "http"),
        ("SAFIRI_GATEWAY_PORT", "70000"),
        ("SAFIRI_TICKETING_URL", "ticketing:8081"),
        ("SAFIRI_GATEWAY_DATABASE_URL", "mysql://127.0.0.1/x"),
        ("SAFIRI_GATEWAY_UPSTREAM_TIMEOUT", "soon"),
        ("SAFIRI_GATEWAY_UPSTREAM_TIMEOUT", "0"),
        ("SAFIRI_GATEWAY_UPSTREAM_TIMEOUT", "60"),
        ("SAFIRI_API_KEYS", "good,with space"),
        ("SAFIRI_RATE_LIMIT_PER_SECOND", "-1"),
        ("SAFIRI_RATE_LIMIT_BURST", "0"),
        ("SAFIRI_RATE_LIMIT_STORAGE", "redis://127.0.0.1:6379"),  # not an async storage
        ("SAFIRI_FLAGS_FILE", "/nonexistent/flags.json"),
        ("SAFIRI_FLAGS_FILE", "pyproject.toml"),  # not flagd's format
    ],
)
def test_each_bad_value_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**KEYS, name: value})


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SAFIRI_GATEWAY_PORT": "x", "SAFIRI_GATEWAY_UPSTREAM_TIMEOUT": "y"})
    message = str(caught.value)
    for name in ("SAFIRI_GATEWAY_PORT", "SAFIRI_GATEWAY_UPSTREAM_TIMEOUT", "SAFIRI_API_KEYS"):
        assert name in message


def test_metrics_networks_default_to_loopback_and_private_and_are_validated() -> None:
    base = KEYS
    default = Settings.from_env(base).metrics_allowed_networks
    assert ipaddress.ip_network("127.0.0.0/8") in default
    assert ipaddress.ip_network("10.0.0.0/8") in default
    assert not any(ipaddress.ip_address("8.8.8.8") in n for n in default)
    chosen = Settings.from_env({**base, "SAFIRI_METRICS_ALLOWED_NETWORKS": "10.1.0.0/16"})
    assert chosen.metrics_allowed_networks == (ipaddress.ip_network("10.1.0.0/16"),)
    with pytest.raises(ConfigError, match=r"SAFIRI_METRICS_ALLOWED_NETWORKS='10\.1\.0\.0/33'"):
        Settings.from_env({**base, "SAFIRI_METRICS_ALLOWED_NETWORKS": "10.1.0.0/33"})

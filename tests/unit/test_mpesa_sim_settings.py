"""Settings come from SAFIRI_* variables, with sandbox defaults and a message per bad value."""

from __future__ import annotations

import pytest

from safiri_mpesa_sim.settings import Settings
from safiri_telemetry import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_match_the_documented_sandbox_values() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8090)
    assert settings.consumer_key == "safiri-sim-consumer-key"
    assert settings.consumer_secret.value == "safiri-sim-consumer-secret"
    assert settings.shortcode == "174379"
    assert settings.passkey.value == "safiri-sim-passkey"
    assert settings.callback_delay == 0.5
    assert settings.admin_key.value == "safiri-sim-admin"


def test_every_setting_can_be_overridden() -> None:
    settings = Settings.from_env(
        {
            "SAFIRI_MPESA_SIM_HOST": "0.0.0.0",
            "SAFIRI_MPESA_SIM_PORT": "9090",
            "SAFIRI_MPESA_CONSUMER_KEY": "key",
            "SAFIRI_MPESA_CONSUMER_SECRET": "secret",
            "SAFIRI_MPESA_SHORTCODE": "600000",
            "SAFIRI_MPESA_PASSKEY": "pass",
            "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "0",
            "SAFIRI_MPESA_SIM_ADMIN_KEY": "admin",
        }
    )
    assert (settings.host, settings.port, settings.consumer_key) == ("0.0.0.0", 9090, "key")
    assert (settings.consumer_secret.value, settings.passkey.value) == ("secret", "pass")
    assert (settings.shortcode, settings.callback_delay) == ("600000", 0.0)
    assert settings.admin_key.value == "admin"


def test_each_bad_value_is_named() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {
                "SAFIRI_MPESA_SIM_PORT": "eighty",
                "SAFIRI_MPESA_SIM_CALLBACK_DELAY": "-1",
                "SAFIRI_MPESA_SHORTCODE": "abc",
            }
        )
    message = str(raised.value)
    assert "SAFIRI_MPESA_SIM_PORT" in message
    assert "SAFIRI_MPESA_SIM_CALLBACK_DELAY" in message
    assert "SAFIRI_MPESA_SHORTCODE" in message


def test_secrets_never_print() -> None:
    text = repr(Settings())
    assert "safiri-sim-consumer-secret" not in text
    assert "safiri-sim-passkey" not in text
    assert "safiri-sim-admin" not in text

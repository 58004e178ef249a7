"""One configuration-error type: a bad ``SAFIRI_*`` value and a bad ``OTEL_*`` value raise the
same ``ConfigError``, each named in its message, so a process's start-up catches one type."""

from __future__ import annotations

import pytest

from safiri_telemetry import ConfigError, TelemetryConfig
from safiri_web import EnvReader, log_level

pytestmark = pytest.mark.unit


def test_a_bad_safiri_value_raises_config_error_naming_every_variable() -> None:
    reader = EnvReader({"SAFIRI_PORT": "eighty", "SAFIRI_DELAY": "soon"})
    reader.port("SAFIRI_PORT", 8080)
    reader.number("SAFIRI_DELAY", 1.0)
    with pytest.raises(ConfigError) as raised:
        reader.check()
    assert "SAFIRI_PORT='eighty' is not a whole number" in str(raised.value)
    assert "SAFIRI_DELAY='soon' is not a number" in str(raised.value)


def test_a_bad_log_level_and_a_bad_otel_value_raise_the_same_type() -> None:
    with pytest.raises(ConfigError, match="SAFIRI_LOG_LEVEL='LOUD'"):
        log_level({"SAFIRI_LOG_LEVEL": "LOUD"})
    with pytest.raises(ConfigError, match="OTEL_BSP_MAX_QUEUE_SIZE"):
        TelemetryConfig.from_env("svc", "0.1.0", {"OTEL_BSP_MAX_QUEUE_SIZE": "many"})


def test_there_is_no_second_configuration_error_type() -> None:
    import safiri_web

    assert not hasattr(safiri_web, "SettingsError")
    assert issubclass(ConfigError, ValueError)

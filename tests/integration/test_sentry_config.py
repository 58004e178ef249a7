"""``SENTRY_DSN``, ``SENTRY_ENVIRONMENT`` and ``SENTRY_RELEASE`` as ``Telemetry.setup`` reads
them: a DSN that cannot be used, or one given without sentry-sdk installed, stops the service
at start-up with a ``ConfigError`` naming the variable (and never echoing the DSN's key)."""

from __future__ import annotations

import sys

import pytest

from safiri_telemetry import ConfigError, TelemetryConfig

pytestmark = pytest.mark.integration


def read(env: dict[str, str]) -> TelemetryConfig:
    return TelemetryConfig.from_env("svc", "1.2.3", env)


def test_the_sentry_variables_are_read() -> None:
    env = {
        "SENTRY_DSN": " https://k3y@o1.ingest.example.com/42 ",
        "SENTRY_ENVIRONMENT": "staging",
        "SENTRY_RELEASE": "safiri@1.2.3",
    }
    sentry = read(env).sentry
    assert sentry is not None
    assert (sentry.dsn, sentry.environment, sentry.release) == (
        "https://k3y@o1.ingest.example.com/42",
        "staging",
        "safiri@1.2.3",
    )
    assert "k3y" not in repr(sentry)


@pytest.mark.parametrize("dsn", ["", "   "])
def test_no_dsn_no_error_monitoring(dsn: str) -> None:
    assert read({"SENTRY_DSN": dsn, "SENTRY_ENVIRONMENT": "staging"}).sentry is None


@pytest.mark.parametrize(
    "dsn",
    [
        "not a url",
        "ftp://k3y@sentry.example.com/1",  # scheme
        "https://sentry.example.com/1",  # no public key
        "https://k3y@sentry.example.com/project",  # no numeric project id
        "https://k3y@sentry.example.com:port/1",  # port
    ],
)
def test_a_bad_dsn_is_a_config_error_naming_the_variable(dsn: str) -> None:
    with pytest.raises(ConfigError, match="SENTRY_DSN") as error:
        read({"SENTRY_DSN": dsn})
    assert "k3y" not in str(error.value)


def test_a_dsn_without_sentry_sdk_installed_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m == "sentry_sdk" or m.startswith("sentry_sdk.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # import sentry_sdk raises ImportError
    with pytest.raises(ConfigError, match=r"SENTRY_DSN.*safiri-telemetry\[sentry\]"):
        read({"SENTRY_DSN": "https://k3y@sentry.example.com/1"})

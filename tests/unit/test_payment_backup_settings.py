"""Payment's backup route settings: optional, all or nothing, never M-Pesa's own URL."""

from __future__ import annotations

import pytest

from safiri_payment.settings import BACKUP_VARIABLES, Settings
from safiri_telemetry import ConfigError

pytestmark = pytest.mark.unit

BACKUP = {
    "SAFIRI_BACKUP_PROVIDER_URL": "http://127.0.0.1:8091/",
    "SAFIRI_BACKUP_CONSUMER_KEY": "backup-key",
    "SAFIRI_BACKUP_CONSUMER_SECRET": "backup-secret",
    "SAFIRI_BACKUP_SHORTCODE": "600100",
    "SAFIRI_BACKUP_PASSKEY": "backup-passkey",
}


def test_without_backup_variables_there_is_no_backup_route() -> None:
    assert Settings.from_env({}).backup is None


def test_a_backup_route_with_every_variable() -> None:
    backup = Settings.from_env(BACKUP).backup
    assert backup is not None
    assert backup.url == "http://127.0.0.1:8091"
    assert (backup.shortcode, backup.consumer_key.value) == ("600100", "backup-key")
    assert "backup-secret" not in repr(backup) and "backup-passkey" not in repr(backup)


@pytest.mark.parametrize("missing", BACKUP_VARIABLES[1:])
def test_a_backup_url_without_one_of_its_credentials_is_refused(missing: str) -> None:
    env = {k: v for k, v in BACKUP.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


def test_credentials_without_the_backup_url_are_refused() -> None:
    env = {k: v for k, v in BACKUP.items() if k != "SAFIRI_BACKUP_PROVIDER_URL"}
    with pytest.raises(ConfigError, match="without SAFIRI_BACKUP_PROVIDER_URL"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SAFIRI_BACKUP_PROVIDER_URL", "ftp://backup", "is not a http/https URL"),
        ("SAFIRI_BACKUP_PROVIDER_URL", "http://127.0.0.1:8090", "must be another provider"),
        ("SAFIRI_BACKUP_SHORTCODE", "PAYBILL", "not a numeric shortcode"),
    ],
)
def test_a_bad_backup_setting_is_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**BACKUP, variable: value})

"""The suite's backup payment route: a second M-Pesa simulator (role backup-simulator) with an
account of its own, run only when the configuration gives it a port, and payment pointed at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from safiri_mpesa_sim.settings import Settings as SimulatorSettings
from safiri_payment.settings import Settings as PaymentSettings
from safiri_suite.suite import BACKUP_SIMULATOR, SuiteConfig, isolated_config, plan_slots

pytestmark = pytest.mark.unit


def config(tmp_path: Path, backup: bool) -> SuiteConfig:
    return isolated_config(
        api_key="k",
        database_prefix="p",
        amqp_url="amqp://guest:guest@127.0.0.1:5672/x",
        log_dir=tmp_path,
        extra_env={},
        backup_provider=backup,
    )


def test_without_a_backup_port_there_is_no_backup_simulator_and_no_backup_route(
    tmp_path: Path,
) -> None:
    c = config(tmp_path, backup=False)
    assert BACKUP_SIMULATOR not in plan_slots(c)
    assert PaymentSettings.from_env(c.env()).backup is None


def test_the_backup_simulator_runs_its_own_account_on_its_own_port_and_ledger(
    tmp_path: Path,
) -> None:
    c = config(tmp_path, backup=True)
    slot = plan_slots(c)[BACKUP_SIMULATOR]
    assert slot.port == c.backup_port == c.port(BACKUP_SIMULATOR) != c.mpesa_port
    # What the process gets: the suite's environment, its role's, its port.
    env = {**c.env(), **c.role_env(BACKUP_SIMULATOR), "SAFIRI_MPESA_SIM_PORT": str(slot.port)}
    backup, primary = SimulatorSettings.from_env(env), SimulatorSettings.from_env(c.env())
    assert backup.port == c.backup_port
    assert backup.shortcode != primary.shortcode
    assert backup.consumer_key != primary.consumer_key
    assert backup.ledger_path == tmp_path / "backup-ledger.jsonl" != primary.ledger_path
    # Payment's backup route is that simulator, with that account's credentials.
    route = PaymentSettings.from_env(c.env()).backup
    assert route is not None
    assert route.url == f"http://127.0.0.1:{c.backup_port}"
    assert (route.shortcode, route.consumer_key.value) == (backup.shortcode, backup.consumer_key)
    assert route.consumer_secret.value == backup.consumer_secret.value
    assert route.passkey.value == backup.passkey.value


def test_without_a_ledger_path_the_backup_keeps_no_journal_rather_than_share_mpesas(
    tmp_path: Path,
) -> None:
    c = config(tmp_path, backup=True)
    c.backup_ledger_path = None
    env = {**c.env(), **c.role_env(BACKUP_SIMULATOR)}
    assert SimulatorSettings.from_env(env).ledger_path is None
    assert c.role_env("mpesa-simulator") == {}

"""The invariant checker with two payment routes: both providers' ledgers are one record of
money taken, and `safiri chaos check` finds the backup's ledger through the suite's state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safiri_chaos import cli
from safiri_chaos.invariants.ledger import Ledger
from safiri_chaos.invariants.model import LedgerEntry, OrderRow, Snapshot
from safiri_chaos.invariants.money import check_ledger

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
ORDER = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def charge(provider: str, receipt: str) -> LedgerEntry:
    return LedgerEntry(f"ws_{receipt}", ORDER[:12], 1500, "completed", 0, receipt, provider)


def confirmed() -> OrderRow:
    later = T0 + timedelta(minutes=1)
    return OrderRow(ORDER, "trip", "CONFIRMED", 1500, later, later, later)


def snapshot(*ledgers: Ledger) -> Snapshot:
    joined = ledgers[0]
    for other in ledgers[1:]:
        joined = joined.joined(other)
    return Snapshot(
        taken_at=T0 + timedelta(minutes=5),
        orders=[confirmed()],
        ledger=joined.entries,
        ledger_since=joined.since,
        ledger_durable=joined.durable,
    )


def names(snap: Snapshot) -> list[str]:
    return [v.invariant for v in check_ledger(snap).violations]


def test_an_order_paid_through_the_backup_is_charged_by_the_joined_ledger() -> None:
    mpesa = Ledger([], T0, True)
    backup = Ledger([charge("backup", "B1")], T0, True)
    assert names(snapshot(mpesa)) == ["confirmed order without a charge"]
    snap = snapshot(mpesa, backup)
    assert names(snap) == []
    assert check_ledger(snap).facts["pushes by provider"] == {"backup": 1}


def test_an_order_charged_by_both_routes_is_charged_twice() -> None:
    snap = snapshot(
        Ledger([charge("mpesa", "M1")], T0, True), Ledger([charge("backup", "B1")], T0, True)
    )
    assert names(snap) == ["order charged twice"]


def test_the_joined_ledger_covers_from_the_later_beginning_and_is_durable_only_if_both_are() -> (
    None
):
    joined = Ledger([], T0, True).joined(Ledger([], T0 + timedelta(minutes=2), False))
    assert (joined.since, joined.durable) == (T0 + timedelta(minutes=2), False)


def test_chaos_check_finds_the_backup_ledger_in_the_suites_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "suite.json"
    monkeypatch.setitem(cli._ENV, "SAFIRI_SUITE_STATE", str(state))
    assert cli._backup_ledger_url(None) is None  # no suite state: no backup ledger
    processes = [{"role": "mpesa-simulator", "port": 8090}]
    state.write_text(json.dumps({"processes": processes}))
    assert cli._backup_ledger_url(None) is None  # `make demo`: no backup simulator
    processes.append({"role": "backup-simulator", "port": 8092})
    state.write_text(json.dumps({"processes": processes}))
    assert cli._backup_ledger_url(None) == "http://127.0.0.1:8092/simulator/ledger"
    assert cli._backup_ledger_url("") is None
    assert cli._backup_ledger_url("http://x/l") == "http://x/l"

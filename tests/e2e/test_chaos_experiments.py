"""Each chaos experiment in its short form, against a suite of its own and a real Prometheus
evaluating a time-shortened copy of the repository's rules: the named alert fires, the
invariants hold, and the journal and report are written."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import asyncpg
import pytest

from safiri.chaos import run_chaos_experiment
from safiri.chaos.events import ALERT_FIRING, FAULT_HEALED, FAULT_INJECTED, EventLog
from safiri.chaos.history import read_history
from tests.conftest import POSTGRES

pytestmark = pytest.mark.e2e

CHAOS = Path(__file__).resolve().parents[2] / "chaos"


@pytest.mark.parametrize(
    ("experiment", "alert"),
    [
        ("provider-outage.json", "SafiriPaymentProviderFailing"),
        ("provider-latency.json", "SafiriPaymentProviderFailing"),
        ("lost-callbacks.json", "SafiriPurchaseSLOBurnFast"),
    ],
)
async def test_the_short_form_passes_the_alert_fires_and_nothing_is_lost(
    experiment: str, alert: str, tmp_path: Path
) -> None:
    outcome = await run_chaos_experiment(
        CHAOS / experiment, self_contained=True, short=True, results_root=tmp_path
    )
    report = outcome.report.read_text()
    assert outcome.passed, report
    assert report.startswith(f"# {outcome.journal['experiment']['title']}\n\nResult: PASSED")

    journal = json.loads((outcome.results_dir / "journal.json").read_text())
    assert journal["status"] == "completed"
    assert journal["steady_states"]["after"]["steady_state_met"] is True

    events = EventLog(outcome.results_dir)
    injected, healed = events.first(FAULT_INJECTED), events.healed_at()
    fired = events.first(ALERT_FIRING)
    assert injected is not None and healed is not None and fired is not None
    assert fired.data["alert"] == alert
    assert injected.at < fired.at <= healed
    assert f"Fired:    {alert}: pending" in report
    assert events.first(FAULT_HEALED) is not None

    invariants = json.loads((outcome.results_dir / "invariants.json").read_text())
    assert invariants["ok"] is True, (outcome.results_dir / "invariants.txt").read_text()
    ops = list(read_history(outcome.results_dir / "history.jsonl"))
    assert sum(op.type == "invoke" for op in ops) >= 20
    assert not [op for op in ops if op.type == "fail"]
    print(f"\n{report}")

    await _the_run_left_nothing_behind(outcome.results_dir)


async def _the_run_left_nothing_behind(results_dir: Path) -> None:
    suite = json.loads((results_dir / "suite.json").read_text())
    conn = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        left = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", suite["databases"]
        )
    finally:
        await conn.close()
    assert left == []
    assert suite["vhost"] not in await asyncio.to_thread(_vhosts)


def _vhosts() -> list[str]:
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts"], capture_output=True, text=True, timeout=60
    )
    return listed.stdout.split()

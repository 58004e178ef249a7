"""Each chaos experiment in its short form, against a suite of its own and a real Prometheus
evaluating a time-shortened copy of the repository's rules: the alert it names (if any) fires
while the fault is on, its metric moves, the invariants hold, and the journal and report are
written.

The RabbitMQ and PostgreSQL experiments stop the machine's shared broker and database for a
few seconds: other suites running at the same time see that outage too."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import asyncpg
import pytest

from safiri_chaos import run_chaos_experiment
from safiri_chaos.events import ALERT_FIRING, FAULT_HEALED, FAULT_INJECTED, EventLog
from safiri_chaos.experiment import load_experiment, safiri_extension
from safiri_chaos.history import read_history
from tests.conftest import POSTGRES

pytestmark = pytest.mark.e2e

CHAOS = Path(__file__).resolve().parents[2] / "chaos"


# The cluster experiments (chaos/cluster/) run on a suite of two replicas per service.
EXPERIMENTS = sorted(
    str(p.relative_to(CHAOS)) for p in [*CHAOS.glob("*.json"), *CHAOS.glob("cluster/*.json")]
)


def expected(experiment: str) -> tuple[str | None, str]:
    """The alert the experiment must fire (None: no alert is expected) and its metric."""
    expects = safiri_extension(load_experiment(CHAOS / experiment))["expects"]
    return expects.get("alert"), expects["metric"]


def test_every_experiment_is_run_here() -> None:
    assert len(EXPERIMENTS) >= 9
    assert {"rabbitmq-restart.json", "postgres-restart.json", "kill-payment.json"} <= set(
        EXPERIMENTS
    )


# Run alone (make test's serial part): these stop the machine's shared broker or database, or
# run RabbitMQ nodes and service replicas of their own.
SERIAL = {"rabbitmq-restart.json", "postgres-restart.json"}


def _param(experiment: str) -> object:
    alone = experiment in SERIAL or experiment.startswith("cluster/")
    return pytest.param(experiment, marks=[pytest.mark.serial] if alone else [])


@pytest.mark.parametrize("experiment", [_param(e) for e in EXPERIMENTS])
async def test_the_short_form_passes_the_alert_fires_and_nothing_is_lost(
    experiment: str, tmp_path: Path
) -> None:
    alert, metric = expected(experiment)
    outcome = await run_chaos_experiment(
        CHAOS / experiment, self_contained=True, short=True, results_root=tmp_path
    )
    report = outcome.report.read_text()
    assert outcome.passed, report
    assert report.startswith(f"# {outcome.journal['experiment']['title']}\n\nResult: PASSED")

    journal = json.loads((outcome.results_dir / "journal.json").read_text())
    assert journal["status"] == "completed"
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    assert all(run["status"] == "succeeded" for run in journal["run"] + journal["rollbacks"])

    events = EventLog(outcome.results_dir)
    injected, healed = events.first(FAULT_INJECTED), events.healed_at()
    assert injected is not None and healed is not None
    assert injected.at < healed
    assert events.first(FAULT_HEALED) is not None
    fired = events.first(ALERT_FIRING)
    if alert is None:
        assert fired is None
        assert "Fired:" not in report
    else:
        assert fired is not None
        assert fired.data["alert"] == alert
        assert injected.at < fired.at <= healed
        assert f"Fired:    {alert}: pending" in report
    moved = [
        run
        for run in journal["run"]
        if run["activity"]["provider"].get("func") in ("metric_rose", "time_after_fault")
        and run["activity"]["provider"]["arguments"]["query"] == metric
    ]
    # A rise of at least 1, or a process started (and scraped) after the fault went in.
    assert moved and moved[0]["output"] > 0, report
    if moved[0]["activity"]["provider"]["func"] == "metric_rose":
        assert moved[0]["output"] >= 1, report

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

"""Chaos Toolkit's own ``chaos run``, as an SRE types it against a running suite: no
``--var-file`` and no Safiri wrapper, only the experiment file and variables in the
environment. The experiment passes, its journal is Chaos Toolkit's, the invariant check and
report land in the results folder, and the experiment's own activities arrive as spans at the
suite's OTLP endpoint, under one experiment span."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from safiri_chaos.prometheus import experiment_prometheus
from safiri_chaos.run import chaos_command
from safiri_suite.suite import SERVICES

from .conftest import suite_of_its_own

pytestmark = pytest.mark.e2e

CHAOS = Path(__file__).resolve().parents[2] / "chaos"
HOLD_SECONDS = 30


async def test_chaos_run_plays_an_experiment_with_only_its_variables_set(
    run_id: str, tmp_path: Path
) -> None:

    async with suite_of_its_own(
        run_id,
        "ctk",
        tmp_path / "logs",
        SAFIRI_HOLD_TTL_SECONDS=str(HOLD_SECONDS),  # no expiry on a busy machine
    ) as s:
        spans = s.spans
        targets = {service: f"127.0.0.1:{s.config.port(service)}" for service in SERVICES}
        fast = {"rules": "fast"}
        async with experiment_prometheus(targets, tmp_path, fast) as prometheus_url:
            results = tmp_path / "results"
            env = {
                **os.environ,
                "SAFIRI_CHAOS_GATEWAY_URL": f"http://127.0.0.1:{s.config.gateway_port}",
                "SAFIRI_CHAOS_SIMULATOR_URL": f"http://127.0.0.1:{s.config.mpesa_port}",
                "SAFIRI_CHAOS_PROMETHEUS_URL": prometheus_url,
                "SAFIRI_TICKETING_DATABASE_URL": s.config.database_url("ticketing"),
                "SAFIRI_PAYMENT_DATABASE_URL": s.config.database_url("payment"),
                "SAFIRI_GATEWAY_DATABASE_URL": s.config.database_url("gateway"),
                "SAFIRI_AMQP_URL": s.config.amqp_url,
                "SAFIRI_CHAOS_API_KEY": s.api_key,
                "SAFIRI_CHAOS_RESULTS_DIR": str(results),
                "SAFIRI_HOLD_TTL_SECONDS": str(HOLD_SECONDS),
                "SAFIRI_CHAOS_RATE": "8",
                "SAFIRI_CHAOS_WARMUP_SECONDS": "2",
                "SAFIRI_CHAOS_FAULT_SECONDS": "4",
                "SAFIRI_CHAOS_ALERT_TIMEOUT_SECONDS": "30",
                "SAFIRI_CHAOS_RECOVERY_TIMEOUT_SECONDS": "30",
                "SAFIRI_CHAOS_LOAD_MAX_SECONDS": "60",
                "SAFIRI_CHAOS_TRIP_DAYS": "2",
                "OTEL_EXPORTER_OTLP_ENDPOINT": str(s.config.otlp_endpoint),
            }
            env.pop("SAFIRI_API_KEYS", None)
            process = await asyncio.create_subprocess_exec(
                *chaos_command(),
                "--no-version-check",
                "run",
                "--journal-path",
                str(tmp_path / "journal.json"),
                str(CHAOS / "duplicate-callbacks.json"),
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(process.communicate(), 180)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "completed"
    assert journal["chaoslib-version"]  # Chaos Toolkit's journal, not a look-alike
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == [
        "heal-the-simulator",
        "stop-the-load-if-still-running",
    ]
    report = (results / "report.md").read_text()
    assert "Result: PASSED" in report, report
    assert json.loads((results / "invariants.json").read_text())["ok"] is True

    chaos_spans = [span for span in spans.spans if span.service == "safiri-chaos"]
    [experiment] = [span for span in chaos_spans if span.name == "chaos.experiment"]
    activities = {
        span.attributes["safiri.chaos.activity.name"]: span
        for span in chaos_spans
        if span.name == "chaos.activity"
    }
    assert {"inject-the-fault", "heal-the-fault", "buy-tickets-in-the-background"} <= set(
        activities
    )
    inject = activities["inject-the-fault"]
    assert inject.trace_id == experiment.trace_id
    assert inject.parent_span_id == experiment.span_id
    assert inject.attributes["safiri.chaos.activity.func"] == "inject_fault"

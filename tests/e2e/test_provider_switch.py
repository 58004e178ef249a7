"""The suite's backup payment route end to end: `safiri ps --json` lists the backup simulator,
an edit of the suite's flag file sends the next purchase to it, the purchase is confirmed, and
`safiri trace ORDER_ID` shows the payment's provider span naming the backup, the flag's
evaluation on the payment span and the backup simulator's own spans in the order's trace."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from safiri_chaos.flagfile import set_default_variant
from safiri_chaos.probes import payment_provider
from safiri_suite.suite import BACKUP_SIMULATOR
from safiri_tracestore import running_store
from tests.conftest import eventually, own_vhost

from .conftest import Running, suite_running

pytestmark = pytest.mark.e2e


async def safiri(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safiri.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def paid_through(running: Running, order_id: str) -> str | None:
    return await payment_provider(running.config.database_url("payment"), order_id)


async def test_a_purchase_after_the_switch_is_paid_by_the_backup_and_traced_there(
    run_id: str, tmp_path: Path
) -> None:
    with own_vhost(f"safiri-test-{run_id}-switch") as amqp_url:
        async with (
            running_store(port=0, path=tmp_path / "traces.sqlite3") as store_url,
            suite_running(
                f"safiri_test_{run_id}_switch",
                amqp_url,
                tmp_path / "logs",
                store_url,
                backup_provider=True,
            ) as running,
        ):
            config = running.config
            code, out = await safiri("ps", "--json", "--state", str(config.state_path))
            assert code == 0, out
            [backup] = [p for p in json.loads(out) if p["role"] == BACKUP_SIMULATOR]
            assert backup["port"] == config.backup_port and backup["ready"], backup

            assert config.flags_file is not None
            set_default_variant(config.flags_file, "payment-provider", "backup")

            async def backup_order() -> str | None:
                """A confirmed purchase paid through the backup (the edit is read within ~1 s;
                a purchase before that goes to M-Pesa and is passed over)."""
                trip = await running.next_trip()
                status, body, _ = await running.place_order(trip["trip_id"])
                assert status == 202, body
                order = await running.final_order(body["order_id"])
                assert order["status"] == "CONFIRMED", order
                took = await paid_through(running, body["order_id"])
                return body["order_id"] if took == "backup" else None

            order_id = await eventually(backup_order, timeout=20, what="a purchase via backup")

            async def traced() -> dict[str, Any] | None:
                code, out = await safiri("trace", order_id, "--json", "--store", store_url)
                if code != 0:
                    return None
                doc: dict[str, Any] = json.loads(out)
                names = {(s["service"], s["name"]) for s in doc["spans"]}
                done = ("payment", "handle_callback") in names
                return doc if done and any(s == BACKUP_SIMULATOR for s, _ in names) else None

            doc = await eventually(traced, timeout=30, interval=0.3, what="the backup's trace")
    spans = doc["spans"]
    [push] = [s for s in spans if (s["service"], s["name"]) == ("payment", "provider.stk_push")]
    assert push["attributes"]["safiri.payment.provider"] == "backup"
    [request] = [s for s in spans if (s["service"], s["name"]) == ("payment", "request_payment")]
    evaluations = [
        e["attributes"]
        for e in request["events"]
        if e["name"] == "feature_flag.evaluation"
        and e["attributes"].get("feature_flag.key") == "payment-provider"
    ]
    assert [e["feature_flag.result.variant"] for e in evaluations] == ["backup"]
    backup_spans = {s["name"] for s in spans if s["service"] == BACKUP_SIMULATOR}
    assert "mpesa.accept_stk_push" in backup_spans, backup_spans
    assert not [s for s in spans if s["service"] == "mpesa-simulator"]
    assert doc["outcome"] == "succeeded", doc["outcome"]

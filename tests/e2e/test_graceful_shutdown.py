"""SIGTERM, as Kubernetes sends it before a pod goes: the payment service stops taking new
messages, finishes the ones in flight (each payment's STK push completes and its message is
acknowledged, so nothing is redelivered and nobody is pushed twice), flushes its spans and
exits 0 within its 10 s deadline. The supervisor then starts it again."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import pytest

from safiri_chaos.invariants.ledger import read_ledger
from tests.conftest import eventually

from .conftest import suite_of_its_own

# serial: each test races a deadline (exit within the grace, a restart and its reconciliation
# before the seat hold expires) that a second worker sharing the two cores can push past.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

ADMIN = {"X-Simulator-Admin-Key": "safiri-sim-admin"}
DEADLINE_SECONDS = 10.0  # aiohttp's shutdown_timeout in safiri_web.runner


async def test_on_sigterm_payment_finishes_its_messages_flushes_and_exits_0(
    run_id: str, tmp_path: Path
) -> None:
    async with suite_of_its_own(run_id, "sigterm", tmp_path) as s:
        spans = s.spans
        trip = await s.add_trip(seats=10)
        sim = f"http://127.0.0.1:{s.config.mpesa_port}"
        # Every STK push takes 2 s to answer: the payments are in flight when SIGTERM comes.
        async with s.http.put(
            f"{sim}/simulator/faults", json={"latency_seconds": 2}, headers=ADMIN
        ) as response:
            assert response.status == 200
        orders = []
        for _ in range(3):
            status, body, _ = await s.place_order(trip)
            assert status == 202, body
            orders.append(str(body["order_id"]))

        conn = await asyncpg.connect(s.config.database_url("payment"))

        async def pushes_in_flight() -> bool | None:
            # A payment is INITIATED while its push waits for the provider's answer.
            waiting = await conn.fetchval(
                "SELECT count(*) FROM payments WHERE status = 'INITIATED'"
            )
            return True if waiting == 3 else None

        try:
            await eventually(pushes_in_flight, timeout=15, what="three pushes in flight")
        finally:
            await conn.close()
        old = s.suite.processes["payment"]
        sent = time.monotonic()
        old.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(old.wait(), DEADLINE_SECONDS + 5)
        took = time.monotonic() - sent
        print(f"\npayment exited {code} {took:.1f} s after SIGTERM")
        assert code == 0
        assert took <= DEADLINE_SECONDS
        async with s.http.delete(f"{sim}/simulator/faults", headers=ADMIN) as response:
            assert response.status == 200

        for order_id in orders:
            assert (await s.final_order(order_id, timeout=30))["status"] == "CONFIRMED"
        ledger = await read_ledger(f"{sim}/simulator/ledger", "safiri-sim-admin")
        assert ledger is not None
        pushed = [e.account_reference for e in ledger.entries]
        for order_id in orders:
            # Finished before the exit, not redelivered to the restarted process: one push.
            assert pushed.count(order_id[:12]) == 1, pushed
        # The old process's spans were flushed on the way out: each order's push is traced.
        for order_id in orders:
            trace_id = spans.trace_of_order(order_id)
            assert trace_id is not None
            names = [span.name for span in spans.trace(trace_id)]
            assert "provider.stk_push" in names, names

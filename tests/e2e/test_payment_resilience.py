"""Payment resilience on the whole suite: lost callbacks found by STK query, the circuit breaker
opening on an outage and closing after it, and payments that succeed after their hold expired.

The shared suite runs with a one-second breaker reset and reconciliation after one second
(tests/e2e/conftest.py), the simulator's faults switched through its admin endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from tests.conftest import eventually

from .conftest import HOLD_TTL_SECONDS, Running

pytestmark = pytest.mark.e2e
ADMIN = {"X-Simulator-Admin-Key": "safiri-sim-admin"}


@pytest_asyncio.fixture
async def faults(running: Running) -> AsyncIterator[aiohttp.ClientSession]:
    """The simulator's faults; healed after the test whatever happens."""
    yield running.http
    async with running.http.delete(
        running.url("mpesa-simulator", "/simulator/faults"), headers=ADMIN
    ) as response:
        assert response.status == 200


async def set_faults(running: Running, **faults: object) -> None:
    async with running.http.put(
        running.url("mpesa-simulator", "/simulator/faults"), json=faults, headers=ADMIN
    ) as response:
        assert response.status == 200, await response.text()


async def placed(running: Running, trip_id: str, phone: str = "254712345678") -> str:
    status, body, _ = await running.place_order(trip_id, phone)
    assert status == 202, body
    return str(body["order_id"])


async def test_a_lost_callback_is_settled_by_stk_query_and_the_order_confirmed(
    running: Running, faults: aiohttp.ClientSession
) -> None:
    trip_id = await running.add_trip(seats=2)
    settled = await running.metric("payment", "payment_reconciliations_total", outcome="settled")
    await set_faults(running, callbacks="lost")
    status, body, headers = await running.place_order(trip_id)
    assert status == 202, body
    order_id, trace_id = body["order_id"], headers["X-Trace-Id"]

    final = await running.final_order(order_id, timeout=HOLD_TTL_SECONDS + 5)
    assert final["status"] == "CONFIRMED"
    assert len(final["tickets"]) == 1
    assert (
        await running.metric("payment", "payment_reconciliations_total", outcome="settled")
        >= settled + 1
    )
    # Settled by the reconciler, inside the purchase's own trace.
    settled_lines = [
        line
        for line in running.log_lines("payment")
        if line.get("order_id") == order_id and line.get("message") == "payment settled"
    ]
    assert [line["trace_id"] for line in settled_lines] == [trace_id]


async def test_an_outage_opens_the_breaker_fails_payments_fast_and_it_closes_after(
    running: Running, faults: aiohttp.ClientSession
) -> None:
    trip_id = await running.add_trip(seats=20)
    opened = await running.metric(
        "payment", "payment_provider_circuit_transitions_total", state="open"
    )
    await set_faults(running, outage="http_503")
    orders = [await placed(running, trip_id) for _ in range(7)]
    finals = [await running.final_order(order_id) for order_id in orders]
    assert {f["status"] for f in finals} == {"PAYMENT_FAILED"}
    reasons = [f["failure_reason"] for f in finals]
    assert any("circuit breaker open" in r for r in reasons), reasons
    assert (
        await running.metric("payment", "payment_provider_circuit_transitions_total", state="open")
        > opened
    )

    await set_faults(running)  # the provider is back

    async def confirmed() -> dict[str, object] | None:
        final = await running.final_order(await placed(running, trip_id))
        return final if final["status"] == "CONFIRMED" else None

    await eventually(confirmed, timeout=20, interval=0.5, what="a purchase after the outage")
    assert await running.metric("payment", "payment_provider_circuit_state") == 0


async def test_payments_that_succeed_after_the_hold_expired_retake_seats_or_are_refunded(
    running: Running, faults: aiohttp.ClientSession
) -> None:
    """The provider answers the push only after the payment service gave up waiting and after
    the hold expired; the simulator still completes the push and calls back with a success."""
    lonely = await running.add_trip(seats=1)
    roomy = await running.add_trip(seats=3)
    before = {
        r: await running.metric("ticketing", "late_payments_total", resolution=r)
        for r in ("refund", "seats_retaken")
    }
    await set_faults(running, latency_seconds=HOLD_TTL_SECONDS + 6)
    refunded, retaken = await asyncio.gather(placed(running, lonely), placed(running, roomy))
    for order_id in (refunded, retaken):
        assert (await running.final_order(order_id, timeout=HOLD_TTL_SECONDS + 4))[
            "status"
        ] == "EXPIRED"
    await set_faults(running)
    # The lonely trip's only seat is sold to someone else before the late success arrives.
    other = await running.final_order(await placed(running, lonely))
    assert other["status"] == "CONFIRMED"

    async def late(resolution: str) -> bool:
        now = await running.metric("ticketing", "late_payments_total", resolution=resolution)
        return now > before[resolution]

    await eventually(lambda: late("seats_retaken"), timeout=20, what="the late success")
    await eventually(lambda: late("refund"), timeout=20, what="the refund")

    reinstated = await running.order(retaken)
    assert reinstated["status"] == "CONFIRMED"
    assert len(reinstated["tickets"]) == 1
    assert (await running.order(refunded))["status"] == "EXPIRED"
    conn = await asyncpg.connect(running.config.database_url("ticketing"))
    try:
        refund = await conn.fetchrow(
            "SELECT amount, status FROM refunds WHERE order_id = $1::uuid", refunded
        )
    finally:
        await conn.close()
    assert refund is not None and dict(refund) == {"amount": 700, "status": "OWED"}


async def test_a_push_that_timed_out_and_whose_callback_was_lost_is_found_by_its_charge(
    running: Running, faults: aiohttp.ClientSession
) -> None:
    """No CheckoutRequestID to query and no callback: only the provider's transaction list
    shows the money was taken. The order has expired by then; it gets its seat back."""
    trip_id = await running.add_trip(seats=2)
    retaken = await running.metric("ticketing", "late_payments_total", resolution="seats_retaken")
    await set_faults(running, latency_seconds=HOLD_TTL_SECONDS + 3, callbacks="lost")
    order_id = await placed(running, trip_id)
    expired = await running.final_order(order_id, timeout=HOLD_TTL_SECONDS + 4)
    assert expired["status"] == "EXPIRED"
    # The provider answers quickly again (the slow push is still completing), callbacks lost.
    await set_faults(running, callbacks="lost")

    async def confirmed() -> dict[str, object] | None:
        order = await running.order(order_id)
        return order if order["status"] == "CONFIRMED" else None

    final = await eventually(confirmed, timeout=20, what="the charge to be found")
    assert len(final["tickets"]) == 1  # type: ignore[arg-type]
    assert (
        await running.metric("ticketing", "late_payments_total", resolution="seats_retaken")
        == retaken + 1
    )
    settled = [
        line
        for line in running.log_lines("payment")
        if line.get("order_id") == order_id and line.get("message") == "payment settled"
    ]
    assert len(settled) == 1

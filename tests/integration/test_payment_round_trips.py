"""Payment's database round trips per purchase, counted on the wire.

A loopback proxy between payment's pool and the real PostgreSQL counts the server's
ReadyForQuery messages: PostgreSQL sends exactly one at the end of every round trip (a simple
query such as BEGIN or COMMIT, or a Bind/Execute/Sync of a prepared statement, or a Parse/Sync
when asyncpg prepares one). The payment is handled by the real use cases on the real adapters
with the pool the service makes; only the provider is a fake. Counts are taken once the pool's
one connection has prepared every statement (a warm-up purchase), as in a running service.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from safiri_payment.adapters.postgres import apply_schema
from safiri_payment.domain.payments import ProviderOutcome
from safiri_payment.service_layer.handlers import PaymentRequest, Payments
from safiri_payment.service_layer.provider import Charge, StkPush
from tests.integration.payment_wiring import callback_parts, payments_on
from tests.integration.wire import WireCounter, counted_pool

pytestmark = pytest.mark.integration


class Provider:
    """Takes every push and answers with a CheckoutRequestID of its own."""

    name = "mpesa"

    def __init__(self) -> None:
        self.pushes: list[StkPush] = []

    async def stk_push(self, request: StkPush) -> str:
        self.pushes.append(request)
        return f"ws_CO_{len(self.pushes)}"

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        return None

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        return []


@pytest_asyncio.fixture(scope="module")
async def url(make_database: Callable[[str], Awaitable[str]]) -> str:
    url = await make_database("payment_round_trips")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    assert pool is not None
    try:
        await apply_schema(pool)
    finally:
        await pool.close()
    return url


@pytest_asyncio.fixture
async def wire(url: str) -> AsyncIterator[tuple[WireCounter, asyncpg.Pool[Any]]]:
    async with counted_pool(url) as (counter, pool):
        yield counter, pool


async def purchase(
    payments: Payments, provider: Provider, counter: WireCounter, message_id: str
) -> dict[str, int]:
    """One payment requested and called back; the round trips each step took."""
    order = str(uuid.uuid4())
    request = PaymentRequest(message_id, order, 1200, "KES", "254712345678", "Nairobi")
    trips: dict[str, int] = {}
    before = counter.round_trips
    await payments.request_payment(request)
    trips["request_payment"] = counter.round_trips - before

    payment_id, token = callback_parts(provider.pushes[-1].callback_url)
    checkout = f"ws_CO_{len(provider.pushes)}"
    outcome = ProviderOutcome(0, "The service request is processed successfully.", "RCPT")
    before = counter.round_trips
    assert await payments.apply_callback(payment_id, token, checkout, outcome)
    trips["apply_callback"] = counter.round_trips - before

    before = counter.round_trips
    await payments.request_payment(request)  # the broker delivers it again
    trips["redelivered request"] = counter.round_trips - before
    assert len(provider.pushes) == len({p.callback_url for p in provider.pushes})
    return trips


async def test_a_purchase_costs_payment_three_round_trips_and_its_callback_four(
    wire: tuple[WireCounter, asyncpg.Pool[Any]],
) -> None:
    counter, pool = wire
    provider = Provider()
    service = payments_on(pool, provider)
    await purchase(service, provider, counter, str(uuid.uuid4()))  # prepares the statements

    trips = await purchase(service, provider, counter, str(uuid.uuid4()))

    # request_payment: was BEGIN, inbox, insert, COMMIT, then BEGIN, SELECT ... FOR UPDATE,
    # UPDATE, COMMIT (8). Now: has the message been handled? (no flag is asked for a
    # redelivery), the message and the payment in one statement, and the push's answer in one
    # UPDATE that holds only if the row is still as recorded. The callback still reads the
    # row locked and decides, then writes it and its event in one statement: BEGIN, SELECT,
    # UPDATE with the outbox row, COMMIT (was 5: the outbox row was a statement of its own).
    # A redelivery was BEGIN, inbox, ROLLBACK (3).
    assert trips == {"request_payment": 3, "apply_callback": 4, "redelivered request": 1}
    assert len(provider.pushes) == 2  # one push per order, none for the redeliveries

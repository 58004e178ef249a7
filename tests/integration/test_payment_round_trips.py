"""Payment's database round trips per purchase, counted on the wire.

A loopback proxy between payment's pool and the real PostgreSQL counts the server's
ReadyForQuery messages: PostgreSQL sends exactly one at the end of every round trip (a simple
query such as BEGIN or COMMIT, or a Bind/Execute/Sync of a prepared statement, or a Parse/Sync
when asyncpg prepares one). The payment is handled by the real use cases on the real adapters
with the pool the service makes; only the provider is a fake. Counts are taken once the pool's
one connection has prepared every statement (a warm-up purchase), as in a running service.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from safiri_payment.adapters.postgres import PostgresPaymentStore, PostgresUnitOfWork, apply_schema
from safiri_payment.domain.payments import ProviderOutcome
from safiri_payment.metrics import PaymentMetrics
from safiri_payment.service_layer.handlers import PaymentRequest, Payments
from safiri_payment.service_layer.provider import Charge, StkPush
from safiri_web import database_pool

pytestmark = pytest.mark.integration

READY_FOR_QUERY = ord("Z")


class WireCounter:
    """A TCP proxy to PostgreSQL counting the round trips (ReadyForQuery messages) it relays."""

    def __init__(self) -> None:
        self.round_trips = 0
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await pump
        await self._server.wait_closed()

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", 5432)
        pumps = {
            asyncio.create_task(self._pump(client_r, server_w, count=False)),
            asyncio.create_task(self._pump(server_r, client_w, count=True)),
        }
        self._pumps |= pumps
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            self._pumps -= pumps
            for writer in (client_w, server_w):
                writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        pending = b""
        while chunk := await reader.read(65536):
            if count:
                # Backend messages: a type byte, then a length that counts itself (not the type).
                pending += chunk
                while len(pending) >= 5:
                    end = 1 + int.from_bytes(pending[1:5], "big")
                    if len(pending) < end:
                        break
                    if pending[0] == READY_FOR_QUERY:
                        self.round_trips += 1  # counted before the client can see it
                    pending = pending[end:]
            writer.write(chunk)
            await writer.drain()


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
    counter = WireCounter()
    port = await counter.start()
    database = url.rsplit("/", 1)[1]
    # The service's own pool (no reset round trip on release), with one connection: the
    # warm-up purchase prepares every statement on it.
    pool = await database_pool(
        f"postgresql://postgres@127.0.0.1:{port}/{database}?sslmode=disable",
        min_size=1,
        max_size=1,
    )
    assert pool is not None
    try:
        yield counter, pool
    finally:
        await pool.close()
        await counter.close()


def payments(pool: asyncpg.Pool[Any], provider: Provider) -> Payments:
    return Payments(
        lambda: PostgresUnitOfWork(pool),
        provider,
        PaymentMetrics(CollectorRegistry()),
        lambda payment_id, token: f"http://cb/{payment_id}?token={token}",
        store=PostgresPaymentStore(pool),
    )


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

    url = provider.pushes[-1].callback_url
    payment_id, token = url.removeprefix("http://cb/").split("?token=")
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
    service = payments(pool, provider)
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

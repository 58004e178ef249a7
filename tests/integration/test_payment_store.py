"""Payment's one-statement store on a real PostgreSQL: a message and its payment are recorded
together or not at all, whatever the concurrency; an answer is written only over the row it was
decided from; a callback that beats the push's answer is kept, even when the push then times out
or fails, and the reconciler never settles it again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from safiri_contracts import PaymentSucceeded
from safiri_payment.adapters.postgres import PostgresPaymentStore, PostgresUnitOfWork, apply_schema
from safiri_payment.domain.payments import Payment, PaymentStatus, ProviderOutcome
from safiri_payment.service_layer.handlers import PaymentRequest, Payments
from safiri_payment.service_layer.provider import (
    Charge,
    ProviderTimeout,
    ProviderUnavailable,
    StkPush,
)
from safiri_payment.service_layer.unit_of_work import Recorded
from safiri_web import database_pool
from tests.conftest import eventually
from tests.integration.payment_wiring import callback_parts, payments_on

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module")
async def pool(make_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await database_pool(await make_database("payment_store"), min_size=2, max_size=6)
    assert pool is not None
    await apply_schema(pool)
    try:
        yield pool
    finally:
        await pool.close()


def new_payment(order_id: str | None = None) -> Payment:
    return Payment(str(uuid.uuid4()), order_id or str(uuid.uuid4()), 1200, "KES", "254712345678")


async def row(pool: asyncpg.Pool[Any], payment_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT status, checkout_request_id, result_code, receipt FROM payments"
        " WHERE payment_id = $1::uuid",
        payment_id,
    )


async def handled(pool: asyncpg.Pool[Any], message_id: str) -> bool:
    return await PostgresPaymentStore(pool).handled(message_id)


async def test_a_message_and_its_payment_are_recorded_together_once(
    pool: asyncpg.Pool[Any],
) -> None:
    store = PostgresPaymentStore(pool)
    message, payment = str(uuid.uuid4()), new_payment()
    assert not await store.handled(message)
    assert await store.record_request(message, payment, "hash") is Recorded.PAYMENT
    assert await store.handled(message)
    assert (await row(pool, payment.payment_id))["status"] == "INITIATED"  # type: ignore[index]

    again = new_payment(payment.order_id)
    assert await store.record_request(message, again, "hash") is Recorded.DUPLICATE
    # Another message for the same order: recorded as processed, the order is not charged again.
    other = str(uuid.uuid4())
    assert await store.record_request(other, again, "hash") is Recorded.ORDER_HAS_PAYMENT
    assert await store.handled(other)
    assert await row(pool, again.payment_id) is None


async def test_concurrent_deliveries_of_a_message_record_one_payment(
    pool: asyncpg.Pool[Any],
) -> None:
    store = PostgresPaymentStore(pool)
    message, order = str(uuid.uuid4()), str(uuid.uuid4())
    outcomes = await asyncio.gather(
        *(store.record_request(message, new_payment(order), "hash") for _ in range(5))
    )
    assert sorted(outcomes) == sorted([Recorded.PAYMENT] + [Recorded.DUPLICATE] * 4)
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE order_id = $1", order) == 1


@pytest.mark.parametrize("first_ends", ["COMMIT", "ROLLBACK"])
async def test_a_delivery_waits_for_one_in_flight_and_records_only_if_that_one_did_not(
    pool: asyncpg.Pool[Any], first_ends: str
) -> None:
    """The inbox row of a delivery still in its transaction: the statement waits for it, then
    records nothing if it committed and everything if it rolled back."""
    store = PostgresPaymentStore(pool)
    message, payment = str(uuid.uuid4()), new_payment()
    async with pool.acquire() as first:
        await first.execute("BEGIN")
        await first.execute("INSERT INTO inbox (message_id) VALUES ($1::uuid)", message)
        second = asyncio.create_task(store.record_request(message, payment, "hash"))

        async def waiting() -> bool:
            return bool(
                await pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock' AND query LIKE 'WITH delivered AS%'"
                )
            )

        await eventually(waiting, what="the second delivery waiting on the first")
        await first.execute(first_ends)
    recorded = await second
    if first_ends == "COMMIT":
        assert recorded is Recorded.DUPLICATE
        assert await row(pool, payment.payment_id) is None
    else:
        assert recorded is Recorded.PAYMENT
        assert await row(pool, payment.payment_id) is not None
    assert await handled(pool, message)


async def test_an_answer_is_written_only_over_the_row_it_was_decided_from(
    pool: asyncpg.Pool[Any],
) -> None:
    store = PostgresPaymentStore(pool)
    payment = new_payment()
    await store.record_request(str(uuid.uuid4()), payment, "hash")

    settled = Payment(**vars(payment))
    settled.settle(ProviderOutcome(0, "ok", "RCPT"))
    assert await store.save_if_unchanged(payment, settled)  # written: the row was `payment`

    accepted = Payment(**vars(payment))
    accepted.accepted("ws_CO_late")
    assert not await store.save_if_unchanged(payment, accepted)  # the row is settled now
    stored = await row(pool, payment.payment_id)
    assert stored is not None
    assert (stored["status"], stored["checkout_request_id"], stored["receipt"]) == (
        "SUCCEEDED",
        None,
        "RCPT",
    )


class CallingBackFirst:
    """A provider whose callback reaches payment before the push's own answer does."""

    name = "mpesa"

    def __init__(self, then: Exception | None = None) -> None:
        self.payments: Payments | None = None
        self.pushes: list[StkPush] = []
        self.then = then  # the push call's own end, after the callback: None, it answers
        self.ledger: list[Charge] = []

    async def stk_push(self, request: StkPush) -> str:
        self.pushes.append(request)
        payment_id, token = callback_parts(request.callback_url)
        assert self.payments is not None
        outcome = ProviderOutcome(0, "The service request is processed successfully.", "R1")
        assert await self.payments.apply_callback(payment_id, token, "ws_CO_1", outcome)
        if self.then is not None:
            raise self.then
        return "ws_CO_1"

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        return None

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        return list(self.ledger)


async def charge_an_order(
    pool: asyncpg.Pool[Any], provider: CallingBackFirst, registry: CollectorRegistry
) -> tuple[Payments, str]:
    """Payments calling ``provider`` (which calls back through them), asked to charge a new
    order; they and the order's id."""
    payments = payments_on(pool, provider, registry)
    provider.payments = payments
    order = str(uuid.uuid4())
    await payments.request_payment(
        PaymentRequest(str(uuid.uuid4()), order, 1200, "KES", "254712345678", "Nairobi")
    )
    return payments, order


async def test_a_callback_before_the_push_s_answer_stays_settled(pool: asyncpg.Pool[Any]) -> None:
    _, order = await charge_an_order(pool, CallingBackFirst(), CollectorRegistry())
    stored = await pool.fetchrow(
        "SELECT payment_id::text, status, checkout_request_id, receipt FROM payments"
        " WHERE order_id = $1::uuid",
        order,
    )
    assert stored is not None
    assert (stored["status"], stored["checkout_request_id"], stored["receipt"]) == (
        PaymentStatus.SUCCEEDED.value,
        "ws_CO_1",
        "R1",
    )
    events = await pool.fetch(
        "SELECT routing_key FROM outbox WHERE payload->>'order_id' = $1", order
    )
    assert [e["routing_key"] for e in events] == ["payment.succeeded"]


@pytest.mark.parametrize(
    "then",
    [ProviderTimeout("no answer in 5 s"), ProviderUnavailable("provider answered 503")],
    ids=["timeout", "unavailable"],
)
async def test_a_callback_before_a_failed_push_stays_settled_and_is_never_settled_again(
    pool: asyncpg.Pool[Any], then: Exception
) -> None:
    """The callback settles the payment, then the push call times out (its answer: unknown)
    or fails: the row keeps its verdict, one event is queued, and the reconciler, finding the
    charge in the provider's list, settles nothing again."""
    provider = CallingBackFirst(then)
    registry = CollectorRegistry()
    payments, order = await charge_an_order(pool, provider, registry)

    async def check() -> None:
        stored = await pool.fetchrow(
            "SELECT status, result_code, receipt FROM payments WHERE order_id = $1::uuid", order
        )
        assert stored is not None
        assert tuple(stored) == (PaymentStatus.SUCCEEDED.value, 0, "R1")
        events = await pool.fetch(
            "SELECT routing_key FROM outbox WHERE payload->>'order_id' = $1", order
        )
        assert [e["routing_key"] for e in events] == ["payment.succeeded"]
        assert registry.get_sample_value("payment_revenue_total", {"currency": "KES"}) == 1200

    await check()
    # Overdue at once (it would be, were it still unsettled), its charge in the provider's list.
    provider.ledger = [Charge("RCPT-9", order[:12], 1200)]
    await payments.reconcile(timedelta(0), limit=1000)
    await check()


async def save_with_its_event(pool: asyncpg.Pool[Any], payment: Payment) -> None:
    """``payment`` saved by a unit of work, with a PaymentSucceeded for it."""
    async with PostgresUnitOfWork(pool) as uow:
        uow.emit(
            PaymentSucceeded(
                order_id=payment.order_id,
                payment_id=payment.payment_id,
                amount=payment.amount,
                currency=payment.currency,
                result_desc=payment.result_desc or "",
                receipt=payment.receipt,
            )
        )
        await uow.save(payment)
        await uow.commit()


async def test_the_store_never_writes_over_a_settled_payment_s_verdict(
    pool: asyncpg.Pool[Any],
) -> None:
    """Whatever a writer decided from (a stale copy, a bug): a settled row keeps its verdict,
    and the events its write carried are not queued; its CheckoutRequestID may still arrive."""
    store = PostgresPaymentStore(pool)
    payment = new_payment()
    await store.record_request(str(uuid.uuid4()), payment, "hash")
    settled = Payment(**vars(payment))
    settled.settle(ProviderOutcome(0, "ok", "RCPT"))
    assert await store.save_if_unchanged(payment, settled)

    stale = Payment(**vars(payment))  # decided from the row as it was before the verdict
    stale.status, stale.result_desc = PaymentStatus.UNKNOWN, "STK push timed out"
    twice = Payment(**vars(payment))
    twice.settle(ProviderOutcome(0, "found in the provider's transactions", "RCPT-9"))
    for overwrite in (stale, twice):
        with pytest.raises(asyncpg.CheckViolationError):
            await save_with_its_event(pool, overwrite)
    with pytest.raises(asyncpg.CheckViolationError):
        await store.save_if_unchanged(settled, stale)

    late = Payment(**vars(settled))
    late.accepted("ws_CO_late")
    async with PostgresUnitOfWork(pool) as uow:
        await uow.save(late)
        await uow.commit()
    stored = await row(pool, payment.payment_id)
    assert stored is not None
    assert tuple(stored) == ("SUCCEEDED", "ws_CO_late", 0, "RCPT")
    events = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE payload->>'payment_id' = $1", payment.payment_id
    )
    assert events == 0

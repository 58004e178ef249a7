"""Ticketing on a real PostgreSQL: the schema forbids double sales; holds are atomic."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_ticketing.adapters.postgres import PostgresUnitOfWork, TripQueries
from safiri_ticketing.adapters.seed import apply_schema, seed_timetable
from safiri_ticketing.domain.trips import SeatsUnavailable
from safiri_ticketing.metrics import TicketingMetrics
from safiri_ticketing.service_layer.handlers import HoldSeats, PaymentResult, Ticketing
from safiri_web import keep_session

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module")
async def url(make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database("ticketing_it")


@pytest_asyncio.fixture(scope="module")
async def pool(url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(url, min_size=2, max_size=12)
    assert pool is not None
    await apply_schema(pool)
    await apply_schema(pool)  # idempotent
    try:
        yield pool
    finally:
        await pool.close()


async def small_trip(pool: asyncpg.Pool[Any] | asyncpg.Connection[Any], seats: int) -> str:
    """A trip tomorrow with ``seats`` seats, straight into ticketing's tables; its id."""
    trip_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO trips VALUES ($1::uuid, 'Nairobi', 'Nakuru', now() + interval '1 day',"
        " now() + interval '1 day 3 hours', 'KB1', 600, 'KES', $2)",
        trip_id,
        seats,
    )
    await pool.execute(
        "INSERT INTO seats SELECT $1::uuid, g FROM generate_series(1, $2) g", trip_id, seats
    )
    return trip_id


def ticketing(pool: asyncpg.Pool[Any]) -> Ticketing:
    return Ticketing(
        lambda: PostgresUnitOfWork(pool),
        TicketingMetrics(CollectorRegistry()),
        lambda: datetime.now(UTC),
        timedelta(minutes=5),
    )


async def test_the_schema_refuses_a_second_allocation_of_a_seat(pool: asyncpg.Pool[Any]) -> None:
    trip_id = await small_trip(pool, 2)
    order = await ticketing(pool).hold_seats(HoldSeats(trip_id, 1, "254712345678"))
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            "INSERT INTO seat_allocations (trip_id, seat_no, order_id)"
            " VALUES ($1::uuid, $2, $3::uuid)",
            trip_id,
            order.seats[0],
            order.order_id,
        )


async def test_concurrent_holds_never_share_a_seat(pool: asyncpg.Pool[Any]) -> None:
    trip_id = await small_trip(pool, 5)
    service = ticketing(pool)
    results = await asyncio.gather(
        *(service.hold_seats(HoldSeats(trip_id, 1, "254712345678")) for _ in range(20)),
        return_exceptions=True,
    )
    held = [r for r in results if not isinstance(r, BaseException)]
    assert len(held) == 5
    assert all(isinstance(r, SeatsUnavailable) for r in results if isinstance(r, BaseException))
    assert sorted(s for o in held for s in o.seats) == [1, 2, 3, 4, 5]


async def test_a_hold_and_its_payment_request_commit_together_with_the_trace(
    pool: asyncpg.Pool[Any], spans: InMemorySpanExporter
) -> None:
    trip_id = await small_trip(pool, 3)
    order = await ticketing(pool).hold_seats(HoldSeats(trip_id, 2, "254712345678"))
    rows = await pool.fetch(
        "SELECT routing_key, payload, trace_context FROM outbox WHERE payload->>'order_id' = $1",
        order.order_id,
    )
    assert len(rows) == 1
    assert rows[0]["routing_key"] == "payment.requested"
    hold = next(s for s in spans.get_finished_spans() if s.name == "hold_seats")
    traceparent = json.loads(rows[0]["trace_context"])["traceparent"]
    assert traceparent.split("-")[1] == format(hold.context.trace_id, "032x")


async def test_a_refused_hold_writes_nothing(pool: asyncpg.Pool[Any]) -> None:
    trip_id = await small_trip(pool, 1)
    outbox_before = await pool.fetchval("SELECT count(*) FROM outbox")
    with pytest.raises(SeatsUnavailable):
        await ticketing(pool).hold_seats(HoldSeats(trip_id, 2, "254712345678"))
    assert await pool.fetchval("SELECT count(*) FROM outbox") == outbox_before
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE trip_id = $1::uuid", trip_id) == 0


async def test_confirmation_issues_unique_tickets_and_failure_frees_seats(
    pool: asyncpg.Pool[Any],
) -> None:
    trip_id = await small_trip(pool, 4)
    service = ticketing(pool)
    paid = await service.hold_seats(HoldSeats(trip_id, 2, "254712345678"))
    unpaid = await service.hold_seats(HoldSeats(trip_id, 2, "254700000001"))
    await service.record_payment_result(
        PaymentResult(str(uuid.uuid4()), paid.order_id, True, 0, "ok", "RCPT")
    )
    await service.record_payment_result(
        PaymentResult(str(uuid.uuid4()), unpaid.order_id, False, 1, "insufficient", None)
    )

    view = await TripQueries(pool).order(paid.order_id)
    assert view is not None and len(view.tickets) == 2
    trip = await TripQueries(pool).trip(trip_id)
    assert trip is not None and trip.seats_available == 2


async def test_the_timetable_seeds_once(pool: asyncpg.Pool[Any]) -> None:
    first = await seed_timetable(pool, 2)
    again = await seed_timetable(pool, 2)
    assert first > 0
    assert again == 0


async def test_pending_orders_gauges_show_how_many_and_the_oldest_age(
    pool: asyncpg.Pool[Any],
) -> None:
    from safiri_ticketing.adapters.order_book import PendingOrders

    registry = CollectorRegistry()
    metrics = TicketingMetrics(registry)
    trip_id = await small_trip(pool, 3)
    service = ticketing(pool)
    old = await service.hold_seats(HoldSeats(trip_id, 1, "254712345678"))
    await service.hold_seats(HoldSeats(trip_id, 1, "254712345678"))
    await pool.execute(
        "UPDATE orders SET created_at = now() - interval '20 minutes' WHERE order_id = $1::uuid",
        old.order_id,
    )
    pending_before = await pool.fetchval(
        "SELECT count(*) FROM orders WHERE status = 'PENDING_PAYMENT'"
    )

    await PendingOrders(pool, metrics.orders_pending, metrics.orders_pending_oldest_age).refresh()

    assert registry.get_sample_value("orders_pending") == pending_before
    age = registry.get_sample_value("orders_pending_oldest_age_seconds")
    assert age is not None and 1200 <= age < 1300


async def expire_now(pool: asyncpg.Pool[Any], service: Ticketing, order_id: str) -> None:
    await pool.execute(
        "UPDATE orders SET expires_at = now() - interval '1 second' WHERE order_id = $1::uuid",
        order_id,
    )
    assert await service.release_expired_holds() >= 1


async def test_a_late_payment_retakes_free_seats_or_records_a_refund(
    pool: asyncpg.Pool[Any],
) -> None:
    trip_id = await small_trip(pool, 3)
    service = ticketing(pool)
    retaken = await service.hold_seats(HoldSeats(trip_id, 2, "254712345678"))
    await expire_now(pool, service, retaken.order_id)
    await service.record_payment_result(
        PaymentResult(str(uuid.uuid4()), retaken.order_id, True, 0, "ok", "RCPT-LATE-1")
    )
    view = await TripQueries(pool).order(retaken.order_id)
    assert view is not None and view.status.value == "CONFIRMED" and len(view.tickets) == 2
    sold = await pool.fetch(
        "SELECT seat_no FROM seat_allocations WHERE order_id = $1::uuid AND sold",
        retaken.order_id,
    )
    assert sorted(r["seat_no"] for r in sold) == sorted(t.seat_no for t in view.tickets)

    refunded = await service.hold_seats(HoldSeats(trip_id, 1, "254712345678"))
    await expire_now(pool, service, refunded.order_id)
    await service.hold_seats(HoldSeats(trip_id, 1, "254712345678"))  # the last seat goes
    await service.record_payment_result(
        PaymentResult(str(uuid.uuid4()), refunded.order_id, True, 0, "ok", "RCPT-LATE-2")
    )
    refund = await pool.fetchrow(
        "SELECT amount, currency, payment_receipt, status FROM refunds WHERE order_id = $1::uuid",
        refunded.order_id,
    )
    assert refund is not None
    assert dict(refund) == {
        "amount": 600,
        "currency": "KES",
        "payment_receipt": "RCPT-LATE-2",
        "status": "OWED",
    }
    view = await TripQueries(pool).order(refunded.order_id)
    assert view is not None and view.status.value == "EXPIRED"


async def test_concurrent_requests_with_one_key_create_one_order_and_one_payment_request(
    pool: asyncpg.Pool[Any],
) -> None:
    trip_id = await small_trip(pool, 10)
    service = ticketing(pool)
    key = str(uuid.uuid4())
    orders = await asyncio.gather(
        *(service.hold_seats(HoldSeats(trip_id, 2, "254712345678", key)) for _ in range(5))
    )
    assert len({o.order_id for o in orders}) == 1
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE trip_id = $1::uuid", trip_id) == 1
    requested = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE payload->>'order_id' = $1", orders[0].order_id
    )
    assert requested == 1
    trip = await TripQueries(pool).trip(trip_id)
    assert trip is not None and trip.seats_available == 8


async def test_a_hold_and_a_payment_result_take_few_round_trips(
    url: str, pool: asyncpg.Pool[Any]
) -> None:
    """Every statement the services' pool sends, counted on one warm connection (asyncpg keeps
    each statement prepared, so one statement is one round trip). A hold: BEGIN, the trip's
    lock, one read under it, one write, COMMIT; a repeated request the same up to the read,
    then ROLLBACK; a payment result: BEGIN, the inbox with the order, one write, COMMIT."""
    sent: list[str] = []

    async def log_statements(conn: asyncpg.Connection[Any]) -> None:
        conn.add_query_logger(lambda query: sent.append(query.query))

    counted = await asyncpg.create_pool(
        url, min_size=1, max_size=1, reset=keep_session, init=log_statements
    )
    assert counted is not None
    try:
        trip_id = await small_trip(pool, 6)
        service = ticketing(counted)

        async def purchase(succeeded: bool) -> dict[str, list[str]]:
            hold = HoldSeats(trip_id, 2, "254712345678", str(uuid.uuid4()))
            sent.clear()
            order = await service.hold_seats(hold)
            counts = {"hold": list(sent)}
            sent.clear()
            assert (await service.hold_seats(hold)).order_id == order.order_id
            counts["repeat"] = list(sent)
            sent.clear()
            await service.record_payment_result(
                PaymentResult(str(uuid.uuid4()), order.order_id, succeeded, 0, "ok", "RCPT")
            )
            counts["result"] = list(sent)
            return counts

        await purchase(True)  # every statement prepared on the one connection
        await purchase(False)
        confirmed = await purchase(True)
        failed = await purchase(False)
    finally:
        await counted.close()

    assert len(confirmed["hold"]) <= 5, confirmed["hold"]
    assert len(confirmed["repeat"]) <= 4, confirmed["repeat"]
    assert len(confirmed["result"]) <= 4, confirmed["result"]
    assert len(failed["result"]) <= 4, failed["result"]
    trip = await TripQueries(pool).trip(trip_id)
    assert trip is not None and trip.seats_available == 2  # two sold twice, two released twice


async def test_concurrent_deliveries_of_a_payment_result_confirm_the_order_once(
    pool: asyncpg.Pool[Any],
) -> None:
    """The inbox row is written before the order is locked, in one statement: redeliveries
    racing the first delivery wait on the inbox and change nothing (and never deadlock)."""
    trip_id = await small_trip(pool, 4)
    service = ticketing(pool)
    order = await service.hold_seats(HoldSeats(trip_id, 2, "254712345678"))
    success = PaymentResult(str(uuid.uuid4()), order.order_id, True, 0, "ok", "RCPT-RACE")
    await asyncio.gather(*(service.record_payment_result(success) for _ in range(8)))
    await service.record_payment_result(success)

    view = await TripQueries(pool).order(order.order_id)
    assert view is not None and view.status.value == "CONFIRMED"
    assert sorted(t.seat_no for t in view.tickets) == sorted(order.seats)
    sold = await pool.fetchval(
        "SELECT count(*) FROM seat_allocations WHERE order_id = $1::uuid AND sold",
        order.order_id,
    )
    assert sold == 2

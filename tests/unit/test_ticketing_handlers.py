"""Ticketing's use cases against in-memory fakes: what is emitted, counted and kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from safiri_contracts import PaymentRequested
from safiri_ticketing.domain.orders import OrderStatus
from safiri_ticketing.domain.trips import SeatsUnavailable, Trip, TripNotFound
from safiri_ticketing.metrics import TicketingMetrics
from safiri_ticketing.service_layer.handlers import HoldSeats, PaymentResult, Ticketing

from .fakes import FakeTicketingDb

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
TRIP = Trip(
    "trip-1",
    "Nairobi",
    "Mombasa",
    NOW + timedelta(days=1),
    NOW + timedelta(days=1, hours=8),
    "KB001",
    1500,
    "KES",
    4,
    4,
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def setup() -> tuple[Ticketing, FakeTicketingDb, CollectorRegistry, Clock]:
    db = FakeTicketingDb()
    db.add_trip(TRIP)
    registry = CollectorRegistry()
    clock = Clock()
    return (
        Ticketing(db.uow, TicketingMetrics(registry), clock, timedelta(minutes=5)),
        db,
        registry,
        clock,
    )


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_holding_seats_asks_for_payment_in_the_same_transaction() -> None:
    ticketing, db, _, _ = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 2, "254712345678"))
    assert order.seats == [1, 2]
    assert order.amount == 3000
    assert order.expires_at == NOW + timedelta(minutes=5)
    assert db.outbox == [
        (
            PaymentRequested.routing_key,
            {
                "schema_version": 1,
                "order_id": order.order_id,
                "trip_id": "trip-1",
                "amount": 3000,
                "currency": "KES",
                "phone": "254712345678",
                "description": "Nairobi-Mombasa x2",
            },
        )
    ]


async def test_a_repeated_request_key_answers_with_the_order_it_created() -> None:
    ticketing, db, registry, _ = setup()
    first = await ticketing.hold_seats(HoldSeats("trip-1", 2, "254712345678", "rk-1"))
    again = await ticketing.hold_seats(HoldSeats("trip-1", 2, "254712345678", "rk-1"))
    other = await ticketing.hold_seats(HoldSeats("trip-1", 1, "254712345678", "rk-2"))

    assert again.order_id == first.order_id
    assert again.seats == first.seats
    assert other.order_id != first.order_id
    assert [key for key, _ in db.outbox] == [PaymentRequested.routing_key] * 2
    assert sample(registry, "seat_holds_total", outcome="held") == 2
    assert sample(registry, "seat_holds_total", outcome="repeated") == 1


async def test_too_few_seats_holds_nothing_and_emits_nothing() -> None:
    ticketing, db, registry, _ = setup()
    await ticketing.hold_seats(HoldSeats("trip-1", 3, "254712345678"))
    with pytest.raises(SeatsUnavailable):
        await ticketing.hold_seats(HoldSeats("trip-1", 2, "254712345678"))
    assert len(db.outbox) == 1
    assert len(db.state["orders"]) == 1
    assert sample(registry, "seat_holds_total", outcome="unavailable") == 1


async def test_an_unknown_trip_is_refused() -> None:
    ticketing, db, _, _ = setup()
    with pytest.raises(TripNotFound):
        await ticketing.hold_seats(HoldSeats("nope", 1, "254712345678"))
    assert db.outbox == []


async def test_a_success_confirms_once_and_counts_tickets_once() -> None:
    ticketing, db, registry, _ = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 2, "254712345678"))
    result = PaymentResult("msg-1", order.order_id, True, 0, "ok", "RCPT1")

    await ticketing.record_payment_result(result)
    await ticketing.record_payment_result(result)  # redelivered

    stored = db.state["orders"][order.order_id]
    assert stored.status is OrderStatus.CONFIRMED
    assert len(stored.tickets) == 2
    assert sample(registry, "tickets_sold_total", route="Nairobi-Mombasa") == 2
    assert sample(registry, "orders_final_total", status="CONFIRMED") == 1


async def test_failed_payment_releases_seats() -> None:
    ticketing, db, registry, _ = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 4, "254700000001"))
    await ticketing.record_payment_result(
        PaymentResult("msg-2", order.order_id, False, 1, "The balance is insufficient", None)
    )
    stored = db.state["orders"][order.order_id]
    assert stored.status is OrderStatus.PAYMENT_FAILED
    assert stored.failure_reason == "The balance is insufficient (ResultCode 1)"
    assert db.state["allocations"] == {}
    assert sample(registry, "tickets_sold_total", route="Nairobi-Mombasa") == 0
    again = await ticketing.hold_seats(HoldSeats("trip-1", 4, "254712345678"))
    assert again.seats == [1, 2, 3, 4]


async def test_release_expired_holds_expires_only_what_ran_out() -> None:
    ticketing, db, registry, clock = setup()
    old = await ticketing.hold_seats(HoldSeats("trip-1", 1, "254712345678"))
    clock.now = NOW + timedelta(minutes=3)
    young = await ticketing.hold_seats(HoldSeats("trip-1", 1, "254712345678"))
    clock.now = NOW + timedelta(minutes=6)

    assert await ticketing.release_expired_holds() == 1

    assert db.state["orders"][old.order_id].status is OrderStatus.EXPIRED
    assert db.state["orders"][young.order_id].status is OrderStatus.PENDING_PAYMENT
    assert sample(registry, "orders_final_total", status="EXPIRED") == 1


async def test_a_late_success_retakes_free_seats_and_confirms_the_expired_order() -> None:
    ticketing, db, registry, clock = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 2, "254712345678"))
    clock.now = NOW + timedelta(minutes=6)
    await ticketing.release_expired_holds()
    await ticketing.record_payment_result(PaymentResult("m", order.order_id, True, 0, "ok", "R"))

    late = db.state["orders"][order.order_id]
    assert late.status is OrderStatus.CONFIRMED
    assert late.payment_receipt == "R"
    assert sorted(t.seat_no for t in late.tickets) == sorted(late.seats)
    assert {db.state["allocations"][("trip-1", seat)] for seat in late.seats} == {order.order_id}
    assert sample(registry, "tickets_sold_total", route="Nairobi-Mombasa") == 2
    assert sample(registry, "late_payments_total", resolution="seats_retaken") == 1
    assert db.state["refunds"] == {}


async def test_a_late_success_whose_seats_were_sold_records_a_refund() -> None:
    ticketing, db, registry, clock = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 2, "254712345678"))
    clock.now = NOW + timedelta(minutes=6)
    await ticketing.release_expired_holds()
    other = await ticketing.hold_seats(HoldSeats("trip-1", 3, "254712345678"))  # 1 seat left
    await ticketing.record_payment_result(PaymentResult("m", order.order_id, True, 0, "ok", "R"))

    assert db.state["orders"][order.order_id].status is OrderStatus.EXPIRED
    refund = db.state["refunds"][order.order_id]
    assert (refund.amount, refund.currency, refund.payment_receipt) == (3000, "KES", "R")
    assert "EXPIRED" in refund.reason
    assert db.state["orders"][other.order_id].seats == [1, 2, 3]  # nobody else's seat taken
    assert sample(registry, "late_payments_total", resolution="refund") == 1
    assert sample(registry, "tickets_sold_total", route="Nairobi-Mombasa") == 0


async def test_a_late_success_without_a_receipt_still_retakes_the_seats() -> None:
    """Settled by STK query, a payment has no receipt (the query does not give one)."""
    ticketing, db, registry, clock = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 1, "254712345678"))
    clock.now = NOW + timedelta(minutes=6)
    await ticketing.release_expired_holds()
    await ticketing.record_payment_result(PaymentResult("m", order.order_id, True, 0, "ok", None))
    assert db.state["orders"][order.order_id].status is OrderStatus.CONFIRMED
    assert sample(registry, "late_payments_total", resolution="seats_retaken") == 1


async def test_a_repeat_of_the_success_that_confirmed_an_order_changes_nothing() -> None:
    ticketing, db, registry, _ = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 1, "254712345678"))
    for message_id in ("m-1", "m-2"):
        await ticketing.record_payment_result(
            PaymentResult(message_id, order.order_id, True, 0, "ok", "R")
        )
    assert db.state["refunds"] == {}
    assert sample(registry, "tickets_sold_total", route="Nairobi-Mombasa") == 1


async def test_a_late_failure_for_an_expired_order_changes_nothing() -> None:
    ticketing, db, registry, clock = setup()
    order = await ticketing.hold_seats(HoldSeats("trip-1", 1, "254712345678"))
    clock.now = NOW + timedelta(minutes=6)
    await ticketing.release_expired_holds()
    await ticketing.record_payment_result(
        PaymentResult("m", order.order_id, False, 1037, "DS timeout", None)
    )
    assert db.state["orders"][order.order_id].status is OrderStatus.EXPIRED
    assert db.state["refunds"] == {}
    assert sample(registry, "late_payments_total", resolution="refund") == 0
    assert sample(registry, "late_payments_total", resolution="seats_retaken") == 0

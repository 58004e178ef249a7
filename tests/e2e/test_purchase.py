"""Buying tickets through the gateway, end to end, on the real broker and database."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from .conftest import Running

pytestmark = pytest.mark.e2e

FAILING_PHONES = {
    "254700000001": 1,
    "254700001032": 1032,
    "254700001037": 1037,
    "254700002001": 2001,
}


async def test_purchase_reaches_confirmed_with_tickets_and_moves_business_metrics(
    running: Running,
) -> None:
    trip = await running.next_trip()
    route = f"{trip['origin']}-{trip['destination']}"
    sold_before = await running.metric("ticketing", "tickets_sold_total", route=route)
    revenue_before = await running.metric("payment", "payment_revenue_total", currency="KES")

    status, body, headers = await running.place_order(trip["trip_id"], seat_count=2)

    assert status == 202, body
    assert body["status"] == "PENDING_PAYMENT"
    assert len(body["seats"]) == 2
    assert body["amount"] == {"amount": 2 * trip["fare"]["amount"], "currency": "KES"}
    assert headers["Location"] == f"/api/v1/orders/{body['order_id']}"
    order = await running.final_order(body["order_id"])
    assert order["status"] == "CONFIRMED", order
    assert sorted(t["seat_no"] for t in order["tickets"]) == sorted(body["seats"])
    assert await running.metric("ticketing", "tickets_sold_total", route=route) == sold_before + 2
    assert (
        await running.metric("payment", "payment_revenue_total", currency="KES")
        == revenue_before + 2 * trip["fare"]["amount"]
    )


@pytest.mark.parametrize(("phone", "result_code"), sorted(FAILING_PHONES.items()))
async def test_failed_payment_releases_seats_with_the_providers_reason(
    running: Running, phone: str, result_code: int
) -> None:
    trip = await running.next_trip("Nairobi", "Kisumu")
    free_before = await running.seats_available(trip)

    status, body, _ = await running.place_order(trip["trip_id"], phone=phone, seat_count=3)
    assert status == 202, body
    assert await running.seats_available(trip) == free_before - 3

    order = await running.final_order(body["order_id"])
    assert order["status"] == "PAYMENT_FAILED"
    assert f"ResultCode {result_code}" in order["failure_reason"]
    assert "tickets" not in order
    assert await running.seats_available(trip) == free_before


async def test_an_unanswered_payment_expires_and_releases_its_seats(running: Running) -> None:
    trip = await running.next_trip("Nairobi", "Nakuru")
    free_before = await running.seats_available(trip)

    status, body, _ = await running.place_order(trip["trip_id"], phone="254700009999")
    assert status == 202, body

    order = await running.final_order(body["order_id"], timeout=30)
    assert order["status"] == "EXPIRED"
    assert await running.seats_available(trip) == free_before


async def test_same_idempotency_key_and_body_returns_the_same_order(running: Running) -> None:
    trip = await running.next_trip("Mombasa", "Malindi")
    key = str(uuid.uuid4())

    first = await running.place_order(trip["trip_id"], key=key)
    again = await running.place_order(trip["trip_id"], key=key)
    other_body = await running.place_order(trip["trip_id"], key=key, seat_count=2)

    assert first[0] == again[0] == 202
    assert again[1]["order_id"] == first[1]["order_id"]
    assert other_body[0] == 422
    assert other_body[1]["trace_id"]


async def test_unknown_trip_is_a_problem_and_writes_nothing(running: Running) -> None:
    status, body, headers = await running.place_order(str(uuid.uuid4()))

    assert status == 422
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["trace_id"] == headers["X-Trace-Id"]
    assert "Traceback" not in str(body)


async def test_thirty_buyers_for_ten_seats_never_share_a_seat(running: Running) -> None:
    trip_id = await running.add_trip(seats=10)

    results = await asyncio.gather(
        *(running.place_order(trip_id, phone=f"2547{10_000_000 + i:08d}") for i in range(30))
    )

    accepted = [body for status, body, _ in results if status == 202]
    refused = [(status, body) for status, body, _ in results if status != 202]
    assert len(accepted) == 10
    assert all(status == 409 and body["trace_id"] for status, body in refused)
    seats = [seat for body in accepted for seat in body["seats"]]
    assert sorted(seats) == list(range(1, 11))
    finals = [await running.final_order(body["order_id"]) for body in accepted]
    tickets = [t["seat_no"] for order in finals for t in order.get("tickets", [])]
    assert len(tickets) == len(set(tickets))
    assert all(o["status"] == "CONFIRMED" for o in finals)

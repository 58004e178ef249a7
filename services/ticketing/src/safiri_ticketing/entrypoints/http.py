"""Ticketing's internal HTTP API: translate requests into use cases, results into JSON."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from safiri_web import Problem, invalid_request

from ..domain.orders import Order, OrderStatus
from ..domain.trips import SeatsUnavailable, Trip, TripNotFound
from ..service_layer.handlers import HoldSeats
from .keys import FLEET, QUERIES, TICKETING
from .requests import IdempotencyKey, PlaceOrder, TripSearch, TripsUnderWay

__all__ = ["routes"]

routes = web.RouteTableDef()


def trip_json(trip: Trip) -> dict[str, Any]:
    return {
        "trip_id": trip.trip_id,
        "origin": trip.origin,
        "destination": trip.destination,
        "departs_at": trip.departs_at.isoformat(),
        "arrives_at": trip.arrives_at.isoformat(),
        "bus_id": trip.bus_id,
        "fare": {"amount": trip.fare, "currency": trip.currency},
        "seats_total": trip.seats_total,
        "seats_available": trip.seats_available,
    }


def order_json(order: Order) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order.order_id,
        "status": order.status.value,
        "trip_id": order.trip_id,
        "seat_count": order.seat_count,
        "seats": order.seats,
        "amount": {"amount": order.amount, "currency": order.currency},
        "expires_at": order.expires_at.isoformat(),
        "created_at": order.created_at.isoformat(),
    }
    if order.status is OrderStatus.CONFIRMED:
        body["tickets"] = [{"ticket_id": t.ticket_id, "seat_no": t.seat_no} for t in order.tickets]
        body["payment_receipt"] = order.payment_receipt
    if order.failure_reason is not None:
        body["failure_reason"] = order.failure_reason
    return body


@routes.get("/trips")
async def search_trips(request: web.Request) -> web.Response:
    try:
        query = TripSearch.model_validate(dict(request.query))
    except ValidationError as error:
        raise invalid_request(error, 400, "invalid-query", "Invalid query") from None
    trips = await request.app[QUERIES].search(
        query.origin or None, query.destination or None, query.date
    )
    return web.json_response({"trips": [trip_json(t) for t in trips]})


@routes.post("/orders")
async def place_order(request: web.Request) -> web.Response:
    try:
        body = PlaceOrder.model_validate_json(await request.read())
        raw_key = request.headers.get("Idempotency-Key")
        request_key = (
            None
            if raw_key is None
            else IdempotencyKey.model_validate({"Idempotency-Key": raw_key}).key
        )
    except ValidationError as error:
        raise invalid_request(error) from None
    cmd = HoldSeats(str(body.trip_id), body.seat_count, body.phone, request_key)
    try:
        order = await request.app[TICKETING].hold_seats(cmd)
    except TripNotFound:
        raise Problem(
            422, "unknown-trip", "Unknown trip", f"No trip {cmd.trip_id} is on sale"
        ) from None
    except SeatsUnavailable as exc:
        raise Problem(409, "seats-unavailable", "Not enough free seats", str(exc)) from None
    return web.json_response(order_json(order), status=201)


@routes.get("/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    try:
        order_id = str(uuid.UUID(request.match_info["order_id"]))
    except ValueError:
        raise Problem(404, "order-not-found", "Order not found") from None
    order = await request.app[QUERIES].order(order_id)
    if order is None:
        raise Problem(404, "order-not-found", "Order not found", f"No order {order_id}")
    return web.json_response(order_json(order))


@routes.get("/fleet/trips-under-way")
async def trips_under_way(request: web.Request) -> web.Response:
    """Which bus runs which trip now: what the fleet simulator reports positions for."""
    try:
        query = TripsUnderWay.model_validate(dict(request.query))
    except ValidationError as error:
        raise invalid_request(error, 400, "invalid-query", "Invalid query") from None
    at = query.at or datetime.now(UTC)
    trips = await request.app[FLEET].trips_under_way(at)
    return web.json_response(
        {
            "at": at.isoformat(),
            "trips": [
                {
                    "trip_id": t.trip_id,
                    "bus_id": t.bus_id,
                    "origin": t.origin,
                    "destination": t.destination,
                    "departs_at": t.departs_at.isoformat(),
                    "arrives_at": t.arrives_at.isoformat(),
                }
                for t in trips
            ],
        }
    )

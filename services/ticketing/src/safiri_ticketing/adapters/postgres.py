"""The PostgreSQL unit of work and the read queries behind the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import asyncpg

from safiri_messaging import OutboxUnitOfWork
from safiri_telemetry import inject_carrier

from ..domain.orders import Order, OrderStatus, Refund, Ticket
from ..domain.trips import Trip
from ..service_layer.unit_of_work import LockedTrip

__all__ = ["PostgresUnitOfWork", "TripQueries"]

_ORDER_COLUMNS = """
    o.order_id::text, o.trip_id::text, o.seat_count, o.phone, o.seats, o.amount, o.currency,
    o.expires_at, o.created_at, o.status, o.failure_reason, o.payment_receipt, o.request_key,
    t.origin || '-' || t.destination AS route
"""


_ORDER_NAMES = (
    "order_id",
    "trip_id",
    "seat_count",
    "phone",
    "seats",
    "amount",
    "currency",
    "expires_at",
    "created_at",
    "status",
    "failure_reason",
    "payment_receipt",
    "request_key",
    "route",
)


def _order(row: asyncpg.Record, tickets: list[Ticket] | None = None, prefix: str = "") -> Order:
    """The order in ``row``'s ``_ORDER_COLUMNS``, each name after ``prefix``."""
    return Order(
        order_id=row[prefix + "order_id"],
        trip_id=row[prefix + "trip_id"],
        seat_count=row[prefix + "seat_count"],
        phone=row[prefix + "phone"],
        seats=list(row[prefix + "seats"]),
        amount=row[prefix + "amount"],
        currency=row[prefix + "currency"],
        expires_at=row[prefix + "expires_at"],
        created_at=row[prefix + "created_at"],
        route=row[prefix + "route"],
        status=OrderStatus(row[prefix + "status"]),
        failure_reason=row[prefix + "failure_reason"],
        request_key=row[prefix + "request_key"],
        payment_receipt=row[prefix + "payment_receipt"],
        tickets=tickets or [],
    )


def _trip(row: asyncpg.Record) -> Trip:
    return Trip(
        trip_id=row["trip_id"],
        origin=row["origin"],
        destination=row["destination"],
        departs_at=row["departs_at"],
        arrives_at=row["arrives_at"],
        bus_id=row["bus_id"],
        fare=row["fare"],
        currency=row["currency"].strip(),
        seats_total=row["seats_total"],
        seats_available=row["seats_available"],
    )


_TRIP_COLUMNS = """
t.trip_id::text, t.origin, t.destination, t.departs_at, t.arrives_at, t.bus_id, t.fare,
t.currency, t.seats_total,
t.seats_total - (SELECT count(*) FROM seat_allocations a WHERE a.trip_id = t.trip_id)
    AS seats_available
"""

_TRIP_SELECT = f"SELECT {_TRIP_COLUMNS} FROM trips t"


def _free_seats(trip: str) -> str:
    """The lowest ``$2`` seat numbers of trip ``trip`` that no order holds or bought."""
    return (
        f"SELECT s.seat_no FROM seats s WHERE s.trip_id = {trip} AND NOT EXISTS"
        " (SELECT 1 FROM seat_allocations a WHERE a.trip_id = s.trip_id"
        "  AND a.seat_no = s.seat_no) ORDER BY s.seat_no LIMIT $2"
    )


# What a hold reads once the trip is locked, in one statement: the trip, its free seats and the
# order an earlier request with the same key created (on any trip). It must be a statement
# after the lock's: in READ COMMITTED a statement sees what was committed when it started, and
# only one that starts after the lock was granted sees the seats the hold before it took.
_UNDER_LOCK = f"""
SELECT {_TRIP_COLUMNS},
    array({_free_seats("t.trip_id")}) AS free_seats,
    {", ".join(f"e.{name} AS earlier_{name}" for name in _ORDER_NAMES)}
FROM trips t LEFT JOIN (
    SELECT {_ORDER_COLUMNS} FROM orders o JOIN trips t USING (trip_id) WHERE o.request_key = $3
) e ON true
WHERE t.trip_id = $1::uuid
"""

# The inbox first, then the order: the order is read and locked only for a first delivery and
# only once the inbox row is in (a concurrent redelivery waits on that row, never holding the
# order's lock while the first delivery waits for it).
_FIRST_DELIVERY_OF_ORDER = f"""
WITH delivered AS (
    INSERT INTO inbox (message_id) VALUES ($1::uuid) ON CONFLICT DO NOTHING RETURNING 1
)
SELECT EXISTS (SELECT FROM delivered) AS first_delivery, o.*
FROM (VALUES (1)) AS one (n) LEFT JOIN (
    SELECT {_ORDER_COLUMNS} FROM orders o JOIN trips t USING (trip_id)
    WHERE o.order_id = $2::uuid AND EXISTS (SELECT FROM delivered) FOR UPDATE OF o
) o ON true
"""

_NEW_ORDER = """
new_order AS (
    INSERT INTO orders (order_id, trip_id, seat_count, phone, amount, currency, status, seats,
                        expires_at, created_at, trace_context, request_key)
    VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12)
    RETURNING order_id, trip_id, seats
),
allocated AS (
    INSERT INTO seat_allocations (trip_id, seat_no, order_id)
    SELECT n.trip_id, seat_no, n.order_id FROM new_order n, unnest(n.seats) AS seat_no
)
"""

_SAVE_ORDER = """
saved AS (
    UPDATE orders SET status = $2, failure_reason = $3, payment_receipt = $4, updated_at = now()
    WHERE order_id = $1::uuid
)
"""

_SELL_SEATS = """,
sold AS (UPDATE seat_allocations SET sold = true WHERE order_id = $1::uuid),
issued AS (
    INSERT INTO tickets (ticket_id, order_id, trip_id, seat_no)
    SELECT ticket.id, $1::uuid, $5::uuid, ticket.seat_no
    FROM unnest($6::uuid[], $7::int[]) AS ticket (id, seat_no)
)
"""

_RELEASE_SEATS = """,
released AS (DELETE FROM seat_allocations WHERE order_id = $1::uuid AND NOT sold)
"""


class PostgresUnitOfWork(OutboxUnitOfWork):
    """Ticketing's queries inside one transaction (the base holds it and the outbox).

    Each step is as few statements as its correctness allows, each statement a round trip.
    """

    async def lock_trip(
        self, trip_id: str, seat_count: int, request_key: str | None = None
    ) -> LockedTrip | None:
        # Locking the trip row serialises holds on one trip; other trips are unaffected.
        locked = await self.conn.fetchval(
            "SELECT 1 FROM trips WHERE trip_id = $1::uuid AND departs_at > now() FOR UPDATE",
            trip_id,
        )
        if locked is None:
            return None
        row = await self.conn.fetchrow(_UNDER_LOCK, trip_id, seat_count, request_key)
        if row is None:
            return None
        earlier = _order(row, prefix="earlier_") if row["earlier_order_id"] else None
        return LockedTrip(_trip(row), list(row["free_seats"]), earlier)

    async def free_seats(self, trip_id: str, count: int) -> list[int]:
        rows = await self.conn.fetch(_free_seats("$1::uuid"), trip_id, count)
        return [r["seat_no"] for r in rows]

    async def add_order(self, order: Order) -> None:
        statement, args = self._with_events(
            _NEW_ORDER,
            (
                order.order_id,
                order.trip_id,
                order.seat_count,
                order.phone,
                order.amount,
                order.currency,
                order.status.value,
                order.seats,
                order.expires_at,
                order.created_at,
                json.dumps(inject_carrier()),
                order.request_key,
            ),
        )
        await self.conn.execute(statement, *args)

    async def first_delivery_of_order(
        self, message_id: str, order_id: str
    ) -> tuple[bool, Order | None]:
        row = await self.conn.fetchrow(_FIRST_DELIVERY_OF_ORDER, message_id, order_id)
        assert row is not None  # one row, whatever the inbox and the orders hold
        first: bool = row["first_delivery"]
        return first, _order(row) if first and row["order_id"] is not None else None

    async def save_order(self, order: Order) -> None:
        args: tuple[object, ...] = (
            order.order_id,
            order.status.value,
            order.failure_reason,
            order.payment_receipt,
        )
        # One statement: the order's row, and its seats sold (with their tickets) or released.
        if order.status is OrderStatus.CONFIRMED:
            ctes = _SAVE_ORDER + _SELL_SEATS
            args += (
                order.trip_id,
                [t.ticket_id for t in order.tickets],
                [t.seat_no for t in order.tickets],
            )
        elif order.status.is_final:
            ctes = _SAVE_ORDER + _RELEASE_SEATS
        else:
            ctes = _SAVE_ORDER
        await self.conn.execute(f"WITH {ctes} SELECT", *args)

    async def take_seats(self, order: Order) -> None:
        await self.conn.execute(
            "WITH taken AS (UPDATE orders SET seats = $2, updated_at = now()"
            " WHERE order_id = $1::uuid RETURNING order_id, trip_id, seats)"
            " INSERT INTO seat_allocations (trip_id, seat_no, order_id)"
            " SELECT t.trip_id, seat_no, t.order_id FROM taken t, unnest(t.seats) AS seat_no",
            order.order_id,
            order.seats,
        )

    async def record_refund(self, refund: Refund) -> None:
        await self.conn.execute(
            "INSERT INTO refunds (order_id, amount, currency, payment_receipt, reason)"
            " VALUES ($1::uuid, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
            refund.order_id,
            refund.amount,
            refund.currency,
            refund.payment_receipt,
            refund.reason,
        )

    async def expired_orders(
        self, now: datetime, limit: int
    ) -> list[tuple[Order, Mapping[str, str]]]:
        rows = await self.conn.fetch(
            f"SELECT {_ORDER_COLUMNS}, o.trace_context FROM orders o JOIN trips t USING (trip_id)"
            " WHERE o.status = 'PENDING_PAYMENT' AND o.expires_at <= $1"
            " ORDER BY o.expires_at LIMIT $2 FOR UPDATE OF o SKIP LOCKED",
            now,
            limit,
        )
        return [(_order(r), json.loads(r["trace_context"])) for r in rows]


class TripQueries:
    """Reads that need no unit of work: search and the order view."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def search(self, origin: str | None, destination: str | None, day: date) -> list[Trip]:
        rows = await self._pool.fetch(
            _TRIP_SELECT + " WHERE (t.departs_at AT TIME ZONE 'Africa/Nairobi')::date = $1"
            " AND t.departs_at > now()"
            " AND ($2::text IS NULL OR lower(t.origin) = lower($2))"
            " AND ($3::text IS NULL OR lower(t.destination) = lower($3))"
            " ORDER BY t.departs_at, t.origin, t.destination",
            day,
            origin,
            destination,
        )
        return [_trip(r) for r in rows]

    async def trip(self, trip_id: str) -> Trip | None:
        row = await self._pool.fetchrow(_TRIP_SELECT + " WHERE t.trip_id = $1::uuid", trip_id)
        return _trip(row) if row else None

    async def order(self, order_id: str) -> Order | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN trips t USING (trip_id)"
                " WHERE o.order_id = $1::uuid",
                order_id,
            )
            if row is None:
                return None
            tickets = await conn.fetch(
                "SELECT ticket_id::text, seat_no FROM tickets WHERE order_id = $1::uuid"
                " ORDER BY seat_no",
                order_id,
            )
        return _order(row, [Ticket(t["ticket_id"], t["seat_no"]) for t in tickets])

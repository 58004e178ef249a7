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

__all__ = ["PostgresUnitOfWork", "TripQueries"]

_ORDER_COLUMNS = """
    o.order_id::text, o.trip_id::text, o.seat_count, o.phone, o.seats, o.amount, o.currency,
    o.expires_at, o.created_at, o.status, o.failure_reason, o.payment_receipt, o.request_key,
    t.origin || '-' || t.destination AS route
"""


def _order(row: asyncpg.Record, tickets: list[Ticket] | None = None) -> Order:
    return Order(
        order_id=row["order_id"],
        trip_id=row["trip_id"],
        seat_count=row["seat_count"],
        phone=row["phone"],
        seats=list(row["seats"]),
        amount=row["amount"],
        currency=row["currency"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        route=row["route"],
        status=OrderStatus(row["status"]),
        failure_reason=row["failure_reason"],
        request_key=row["request_key"],
        payment_receipt=row["payment_receipt"],
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


_TRIP_SELECT = """
SELECT t.trip_id::text, t.origin, t.destination, t.departs_at, t.arrives_at, t.bus_id, t.fare,
       t.currency, t.seats_total,
       t.seats_total - (SELECT count(*) FROM seat_allocations a WHERE a.trip_id = t.trip_id)
           AS seats_available
FROM trips t
"""


class PostgresUnitOfWork(OutboxUnitOfWork):
    """Ticketing's queries inside one transaction (the base holds it and the outbox)."""

    async def lock_trip(self, trip_id: str) -> Trip | None:
        # Locking the trip row serialises holds on one trip; other trips are unaffected.
        locked = await self.conn.fetchval(
            "SELECT 1 FROM trips WHERE trip_id = $1::uuid AND departs_at > now() FOR UPDATE",
            trip_id,
        )
        if locked is None:
            return None
        row = await self.conn.fetchrow(_TRIP_SELECT + " WHERE t.trip_id = $1::uuid", trip_id)
        return _trip(row) if row else None

    async def free_seats(self, trip_id: str, count: int) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT s.seat_no FROM seats s WHERE s.trip_id = $1::uuid AND NOT EXISTS"
            " (SELECT 1 FROM seat_allocations a WHERE a.trip_id = s.trip_id"
            "  AND a.seat_no = s.seat_no) ORDER BY s.seat_no LIMIT $2",
            trip_id,
            count,
        )
        return [r["seat_no"] for r in rows]

    async def add_order(self, order: Order) -> None:
        await self.conn.execute(
            "INSERT INTO orders (order_id, trip_id, seat_count, phone, amount, currency, status,"
            " seats, expires_at, created_at, trace_context, request_key)"
            " VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12)",
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
        )
        await self.conn.executemany(
            "INSERT INTO seat_allocations (trip_id, seat_no, order_id)"
            " VALUES ($1::uuid, $2, $3::uuid)",
            [(order.trip_id, seat, order.order_id) for seat in order.seats],
        )

    async def get_order(self, order_id: str) -> Order | None:
        row = await self.conn.fetchrow(
            f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN trips t USING (trip_id)"
            " WHERE o.order_id = $1::uuid FOR UPDATE OF o",
            order_id,
        )
        return _order(row) if row else None

    async def order_for_request(self, request_key: str) -> Order | None:
        row = await self.conn.fetchrow(
            f"SELECT {_ORDER_COLUMNS} FROM orders o JOIN trips t USING (trip_id)"
            " WHERE o.request_key = $1",
            request_key,
        )
        return _order(row) if row else None

    async def save_order(self, order: Order) -> None:
        await self.conn.execute(
            "UPDATE orders SET status = $2, failure_reason = $3, payment_receipt = $4,"
            " updated_at = now() WHERE order_id = $1::uuid",
            order.order_id,
            order.status.value,
            order.failure_reason,
            order.payment_receipt,
        )
        if order.status is OrderStatus.CONFIRMED:
            await self.conn.execute(
                "UPDATE seat_allocations SET sold = true WHERE order_id = $1::uuid",
                order.order_id,
            )
            await self.conn.executemany(
                "INSERT INTO tickets (ticket_id, order_id, trip_id, seat_no)"
                " VALUES ($1::uuid, $2::uuid, $3::uuid, $4)",
                [(t.ticket_id, order.order_id, order.trip_id, t.seat_no) for t in order.tickets],
            )
        elif order.status.is_final:
            await self.conn.execute(
                "DELETE FROM seat_allocations WHERE order_id = $1::uuid AND NOT sold",
                order.order_id,
            )

    async def take_seats(self, order: Order) -> None:
        await self.conn.execute(
            "UPDATE orders SET seats = $2, updated_at = now() WHERE order_id = $1::uuid",
            order.order_id,
            order.seats,
        )
        await self.conn.executemany(
            "INSERT INTO seat_allocations (trip_id, seat_no, order_id)"
            " VALUES ($1::uuid, $2, $3::uuid)",
            [(order.trip_id, seat, order.order_id) for seat in order.seats],
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

"""Takes a snapshot for the checker: read-only SQL, the simulator's ledger, the DLQ depths.

The ledger is read first: a charge it shows has had its callback sent before the databases
are read, so a settled purchase is never seen charged-but-pending by the order of reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg

from safiri_contracts import PAYMENT_REQUESTS, PAYMENT_RESULTS

from .dead_letters import dead_letter_depths
from .ledger import read_ledger
from .model import (
    IdempotencyRecord,
    OrderRow,
    OutboxRow,
    PaymentRow,
    SeatClaim,
    Snapshot,
    TripSeats,
)

__all__ = ["DEAD_LETTER_QUEUES", "Sources", "read_orders", "read_snapshot"]

DEAD_LETTER_QUEUES = (PAYMENT_REQUESTS.dead_letter_queue, PAYMENT_RESULTS.dead_letter_queue)


@dataclass(frozen=True)
class Sources:
    ticketing_database_url: str
    payment_database_url: str
    gateway_database_url: str | None = None
    ledger_url: str | None = None  # http://127.0.0.1:8090/simulator/ledger
    # The backup payment route's simulator: its charges are money taken too.
    backup_ledger_url: str | None = None
    simulator_admin_key: str = "safiri-sim-admin"
    amqp_url: str | None = None
    dead_letter_queues: tuple[str, ...] = DEAD_LETTER_QUEUES


async def read_snapshot(sources: Sources) -> Snapshot:
    ledger = await read_ledger(sources.ledger_url, sources.simulator_admin_key)
    if ledger is not None and sources.backup_ledger_url:
        backup = await read_ledger(
            sources.backup_ledger_url, sources.simulator_admin_key, provider="backup"
        )
        assert backup is not None
        ledger = ledger.joined(backup)
    async with _read_only(sources.ticketing_database_url) as conn:
        snapshot = Snapshot(taken_at=await conn.fetchval("SELECT now()"))
        if ledger is not None:
            snapshot.ledger = ledger.entries
            snapshot.ledger_since, snapshot.ledger_durable = ledger.since, ledger.durable
        await _read_ticketing(conn, snapshot)
        snapshot.outbox += await _outbox(conn, "ticketing")
    async with _read_only(sources.payment_database_url) as conn:
        snapshot.payments = [
            PaymentRow(r["payment_id"], r["order_id"], r["status"], r["amount"])
            for r in await conn.fetch(
                "SELECT payment_id::text, order_id::text, status, amount FROM payments"
            )
        ]
        snapshot.outbox += await _outbox(conn, "payment")
    if sources.gateway_database_url:
        async with _read_only(sources.gateway_database_url) as conn:
            snapshot.idempotency = {
                r["key"]: IdempotencyRecord(r["key"], r["response_status"], r["order_id"])
                for r in await conn.fetch(
                    "SELECT key, response_status, response_body->>'order_id' AS order_id"
                    " FROM idempotency_keys"
                )
            }
    if sources.amqp_url:
        snapshot.dead_letters = await dead_letter_depths(
            sources.amqp_url, sources.dead_letter_queues
        )
    return snapshot


async def read_orders(ticketing_database_url: str) -> Snapshot:
    """A snapshot of the orders alone: enough to wait for them to be final."""
    async with _read_only(ticketing_database_url) as conn:
        snapshot = Snapshot(taken_at=await conn.fetchval("SELECT now()"))
        snapshot.orders = await _orders(conn)
    return snapshot


@contextlib.asynccontextmanager
async def _read_only(url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn
    finally:
        await conn.close()


async def _read_ticketing(conn: asyncpg.Connection[Any], snapshot: Snapshot) -> None:
    snapshot.trips = [
        TripSeats(r["trip_id"], r["seats_total"], r["seat_rows"])
        for r in await conn.fetch(
            "SELECT t.trip_id::text, t.seats_total, count(s.seat_no) AS seat_rows"
            " FROM trips t LEFT JOIN seats s USING (trip_id) GROUP BY t.trip_id"
        )
    ]
    snapshot.allocations = [
        SeatClaim(r["trip_id"], r["seat_no"], r["order_id"], r["sold"])
        for r in await conn.fetch(
            "SELECT trip_id::text, seat_no, order_id::text, sold FROM seat_allocations"
        )
    ]
    snapshot.tickets = [
        SeatClaim(r["trip_id"], r["seat_no"], r["order_id"])
        for r in await conn.fetch("SELECT trip_id::text, seat_no, order_id::text FROM tickets")
    ]
    snapshot.orders = await _orders(conn)
    snapshot.refunds = {
        r["order_id"]: r["amount"]
        for r in await conn.fetch("SELECT order_id::text, amount FROM refunds")
    }
    snapshot.request_keys = {
        r["request_key"]: r["order_id"]
        for r in await conn.fetch(
            "SELECT request_key, order_id::text FROM orders WHERE request_key IS NOT NULL"
        )
    }


async def _orders(conn: asyncpg.Connection[Any]) -> list[OrderRow]:
    return [
        OrderRow(
            r["order_id"],
            r["trip_id"],
            r["status"],
            r["amount"],
            r["created_at"],
            r["updated_at"],
            r["expires_at"],
        )
        for r in await conn.fetch(
            "SELECT order_id::text, trip_id::text, status, amount, created_at, updated_at,"
            " expires_at FROM orders"
        )
    ]


async def _outbox(conn: asyncpg.Connection[Any], service: str) -> list[OutboxRow]:
    rows = await conn.fetch(
        "SELECT message_id::text, routing_key,"
        " extract(epoch FROM now() - created_at)::float8 AS age"
        " FROM outbox WHERE published_at IS NULL ORDER BY id"
    )
    return [OutboxRow(service, r["message_id"], r["routing_key"], r["age"]) for r in rows]

"""Payment's PostgreSQL schema and unit of work."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from safiri_messaging import OUTBOX_SCHEMA, add_to_outbox, first_delivery
from safiri_telemetry import inject_carrier

from ..domain.payments import Payment, PaymentStatus
from ..service_layer.unit_of_work import StoredPayment

__all__ = ["SCHEMA", "PostgresUnitOfWork", "apply_schema"]

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS payments (
    payment_id uuid PRIMARY KEY,
    order_id uuid NOT NULL UNIQUE,  -- at most one charge per order
    amount integer NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    phone text NOT NULL,
    status text NOT NULL,
    checkout_request_id text UNIQUE,
    callback_token_hash text NOT NULL,
    result_code integer,
    result_desc text,
    receipt text,
    trace_context jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""
    + OUTBOX_SCHEMA
)

_LOCK_KEY = 0x5AF1_0002


async def apply_schema(pool: asyncpg.Pool[Any]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(SCHEMA)


class PostgresUnitOfWork:
    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool
        self._events: list[tuple[str, Mapping[str, Any]]] = []

    async def __aenter__(self) -> Self:
        self._conn: PoolConnectionProxy[Any] = await self._pool.acquire()
        self._tx = self._conn.transaction()
        await self._tx.start()
        self._committed = False
        self._events = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self._tx.rollback()
        finally:
            await self._pool.release(self._conn)

    async def commit(self) -> None:
        for routing_key, payload in self._events:
            await add_to_outbox(self._conn, routing_key, payload)
        await self._tx.commit()
        self._committed = True

    def emit(self, routing_key: str, payload: Mapping[str, Any]) -> None:
        self._events.append((routing_key, payload))

    async def first_delivery(self, message_id: str) -> bool:
        return await first_delivery(self._conn, message_id)

    async def add(self, payment: Payment, callback_token_hash: str) -> bool:
        inserted = await self._conn.fetchval(
            "INSERT INTO payments (payment_id, order_id, amount, currency, phone, status,"
            " callback_token_hash, trace_context)"
            " VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8::jsonb)"
            " ON CONFLICT (order_id) DO NOTHING RETURNING 1",
            payment.payment_id,
            payment.order_id,
            payment.amount,
            payment.currency,
            payment.phone,
            payment.status.value,
            callback_token_hash,
            json.dumps(inject_carrier()),
        )
        return inserted is not None

    async def get(self, payment_id: str) -> StoredPayment | None:
        row = await self._conn.fetchrow(
            "SELECT payment_id::text, order_id::text, amount, currency, phone, status,"
            " checkout_request_id, result_code, result_desc, receipt, callback_token_hash,"
            " trace_context FROM payments WHERE payment_id = $1::uuid FOR UPDATE",
            payment_id,
        )
        if row is None:
            return None
        payment = Payment(
            payment_id=row["payment_id"],
            order_id=row["order_id"],
            amount=row["amount"],
            currency=row["currency"].strip(),
            phone=row["phone"],
            status=PaymentStatus(row["status"]),
            checkout_request_id=row["checkout_request_id"],
            result_code=row["result_code"],
            result_desc=row["result_desc"],
            receipt=row["receipt"],
        )
        return StoredPayment(payment, row["callback_token_hash"], json.loads(row["trace_context"]))

    async def save(self, payment: Payment) -> None:
        await self._conn.execute(
            "UPDATE payments SET status = $2, checkout_request_id = $3, result_code = $4,"
            " result_desc = $5, receipt = $6, updated_at = now() WHERE payment_id = $1::uuid",
            payment.payment_id,
            payment.status.value,
            payment.checkout_request_id,
            payment.result_code,
            payment.result_desc,
            payment.receipt,
        )

"""Payment's PostgreSQL schema, unit of work and one-statement store."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import asyncpg

from safiri_messaging import OUTBOX_SCHEMA, OutboxUnitOfWork
from safiri_telemetry import inject_carrier
from safiri_web import apply_schema as schema_once

from ..domain.payments import Payment, PaymentStatus
from ..service_layer.unit_of_work import Recorded, StoredPayment

_COLUMNS = (
    "payment_id::text, order_id::text, amount, currency, phone, status, checkout_request_id,"
    " result_code, result_desc, receipt, callback_token_hash, trace_context, provider,"
    " now() - created_at AS age"
)

__all__ = ["SCHEMA", "PostgresPaymentStore", "PostgresUnitOfWork", "apply_schema"]

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
CREATE INDEX IF NOT EXISTS payments_unsettled ON payments (updated_at)
    WHERE status IN ('INITIATED', 'AWAITING_CALLBACK', 'UNKNOWN');
-- The route that took the payment (its callbacks, queries and reconciliation go there);
-- every payment made before there were routes went to M-Pesa.
ALTER TABLE payments ADD COLUMN IF NOT EXISTS provider text NOT NULL DEFAULT 'mpesa';
-- A verdict is final: whatever a writer decided from, a settled payment's status, result and
-- receipt never change (its CheckoutRequestID may still arrive). The domain never asks for
-- it; this refuses it, the write's events with it. Fired only on settled rows' updates.
CREATE OR REPLACE FUNCTION payments_verdict_is_final() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.status, NEW.result_code, NEW.result_desc, NEW.receipt)
        IS DISTINCT FROM (OLD.status, OLD.result_code, OLD.result_desc, OLD.receipt) THEN
        RAISE EXCEPTION 'payment % is % already: its verdict is final', OLD.payment_id, OLD.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER payments_verdict_is_final BEFORE UPDATE ON payments
    FOR EACH ROW WHEN (OLD.status IN ('SUCCEEDED', 'FAILED'))
    EXECUTE FUNCTION payments_verdict_is_final();
"""
    + OUTBOX_SCHEMA
)


async def apply_schema(pool: asyncpg.Pool[Any]) -> str:
    """Payment's schema, once per version (safiri_web.apply_schema): ``current`` or ``applied``."""
    return await schema_once(pool, "payment", SCHEMA)


class PostgresUnitOfWork(OutboxUnitOfWork):
    """Payment's queries inside one transaction (the base holds it and the outbox)."""

    async def add(self, payment: Payment, callback_token_hash: str) -> bool:
        inserted = await self.conn.fetchval(
            "INSERT INTO payments (payment_id, order_id, amount, currency, phone, status,"
            " callback_token_hash, trace_context, provider)"
            " VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6, $7, $8::jsonb, $9)"
            " ON CONFLICT (order_id) DO NOTHING RETURNING 1",
            payment.payment_id,
            payment.order_id,
            payment.amount,
            payment.currency,
            payment.phone,
            payment.status.value,
            callback_token_hash,
            json.dumps(inject_carrier()),
            payment.provider,
        )
        return inserted is not None

    async def get(self, payment_id: str) -> StoredPayment | None:
        row = await self.conn.fetchrow(
            f"SELECT {_COLUMNS} FROM payments WHERE payment_id = $1::uuid FOR UPDATE", payment_id
        )
        return _stored(row) if row is not None else None

    async def overdue(self, older_than: timedelta, limit: int) -> list[StoredPayment]:
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM payments"
            " WHERE status IN ('INITIATED', 'AWAITING_CALLBACK', 'UNKNOWN')"
            " AND updated_at < now() - $1::interval ORDER BY updated_at LIMIT $2",
            older_than,
            limit,
        )
        return [_stored(row) for row in rows]

    async def touch(self, payment_id: str) -> None:
        await self.conn.execute(
            "UPDATE payments SET updated_at = now() WHERE payment_id = $1::uuid", payment_id
        )

    async def save(self, payment: Payment) -> None:
        # The events emitted so far are written by the same statement: one round trip fewer.
        statement, args = self._with_events(
            "saved AS (UPDATE payments SET status = $2, checkout_request_id = $3,"
            " result_code = $4, result_desc = $5, receipt = $6, updated_at = now()"
            " WHERE payment_id = $1::uuid RETURNING 1)",
            (
                payment.payment_id,
                payment.status.value,
                payment.checkout_request_id,
                payment.result_code,
                payment.result_desc,
                payment.receipt,
            ),
        )
        await self.conn.execute(statement, *args)


# The message and the payment in one statement: the payment is inserted only if the message's
# inbox row was (a delivery recorded first makes it a duplicate; a concurrent one waits on the
# inbox's key, then does nothing), and at most once per order.
_RECORD_REQUEST = (
    "WITH delivered AS ("
    "INSERT INTO inbox (message_id) VALUES ($1::uuid) ON CONFLICT DO NOTHING RETURNING 1"
    "), added AS ("
    "INSERT INTO payments (payment_id, order_id, amount, currency, phone, status,"
    " callback_token_hash, trace_context, provider)"
    " SELECT $2::uuid, $3::uuid, $4::integer, $5::text, $6::text, $7::text, $8::text,"
    " $9::jsonb, $10::text FROM delivered"
    " ON CONFLICT (order_id) DO NOTHING RETURNING 1"
    ") SELECT EXISTS (SELECT FROM delivered) AS delivered, EXISTS (SELECT FROM added) AS added"
)

# ``save``'s columns, written only where each still holds what the caller decided from.
_SAVE_IF_UNCHANGED = (
    "UPDATE payments SET status = $2, checkout_request_id = $3, result_code = $4,"
    " result_desc = $5, receipt = $6, updated_at = now()"
    " WHERE payment_id = $1::uuid AND status = $7"
    " AND checkout_request_id IS NOT DISTINCT FROM $8 AND result_code IS NOT DISTINCT FROM $9"
    " AND result_desc IS NOT DISTINCT FROM $10 AND receipt IS NOT DISTINCT FROM $11"
    " RETURNING 1"
)


class PostgresPaymentStore:
    """Single statements on the pool, each its own transaction (autocommit): one round trip
    each, where a unit of work adds BEGIN and COMMIT."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self._pool = pool

    async def handled(self, message_id: str) -> bool:
        found: bool = await self._pool.fetchval(
            "SELECT EXISTS (SELECT FROM inbox WHERE message_id = $1::uuid)", message_id
        )
        return found

    async def record_request(
        self, message_id: str, payment: Payment, callback_token_hash: str
    ) -> Recorded:
        row = await self._pool.fetchrow(
            _RECORD_REQUEST,
            message_id,
            payment.payment_id,
            payment.order_id,
            payment.amount,
            payment.currency,
            payment.phone,
            payment.status.value,
            callback_token_hash,
            json.dumps(inject_carrier()),
            payment.provider,
        )
        assert row is not None
        if not row["delivered"]:
            return Recorded.DUPLICATE
        return Recorded.PAYMENT if row["added"] else Recorded.ORDER_HAS_PAYMENT

    async def save_if_unchanged(self, before: Payment, after: Payment) -> bool:
        if before.payment_id != after.payment_id:
            raise ValueError("before and after are not the same payment")
        saved = await self._pool.fetchval(
            _SAVE_IF_UNCHANGED,
            after.payment_id,
            after.status.value,
            after.checkout_request_id,
            after.result_code,
            after.result_desc,
            after.receipt,
            before.status.value,
            before.checkout_request_id,
            before.result_code,
            before.result_desc,
            before.receipt,
        )
        return saved is not None


def _stored(row: asyncpg.Record) -> StoredPayment:
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
        provider=row["provider"],
    )
    return StoredPayment(
        payment, row["callback_token_hash"], json.loads(row["trace_context"]), row["age"]
    )

"""The gateway's tables: what each Idempotency-Key has been used for, and the customers seen
lately (adapters/active_users.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .active_users import SCHEMA as ACTIVE_USERS_SCHEMA

__all__ = ["SCHEMA", "apply_schema", "ensure_database"]

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    client text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    state text NOT NULL DEFAULT 'in_flight' CHECK (state IN ('in_flight', 'completed')),
    owner uuid NOT NULL,
    locked_until timestamptz,
    response_status integer,
    response_body jsonb,
    trace_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (client, key),
    CHECK (state = 'in_flight' OR (response_status IS NOT NULL AND response_body IS NOT NULL))
);
"""
    + ACTIVE_USERS_SCHEMA
)

# Any fixed number: it only has to differ from the other services' schema locks.
_SCHEMA_LOCK = 0x5AF1_0001


async def apply_schema(pool: asyncpg.Pool[Any]) -> None:
    # Two gateways starting together would both see the table missing; CREATE TABLE IF NOT
    # EXISTS is not safe against that race, the transaction-scoped advisory lock is.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _SCHEMA_LOCK)
        await conn.execute(SCHEMA)


async def ensure_database(url: str) -> None:
    """Create the database ``url`` names if it is missing, so a fresh machine just starts."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute('CREATE DATABASE "{}"'.format(name.replace('"', '""')))
    except asyncpg.DuplicateDatabaseError:
        pass  # another gateway created it first
    finally:
        await admin.close()

"""The gateway's tables: what each Idempotency-Key has been used for, and the customers seen
lately (adapters/active_users.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from safiri_web import apply_schema as schema_once

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


async def apply_schema(pool: asyncpg.Pool[Any]) -> str:
    """The gateway's schema, once per version (safiri_web.apply_schema): two gateways starting
    together take turns under its advisory lock, and a start beside a gateway under load takes
    no lock on the tables in use. Returns ``current`` or ``applied``."""
    return await schema_once(pool, "gateway", SCHEMA)


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

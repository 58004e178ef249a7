"""Idempotent consumption: the first delivery of a message id wins, in the handler's transaction."""

from __future__ import annotations

from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["first_delivery"]


async def first_delivery(
    conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any], message_id: str
) -> bool:
    """Record ``message_id``; ``False`` if it was already processed (a redelivery)."""
    row = await conn.fetchval(
        "INSERT INTO inbox (message_id) VALUES ($1::uuid) ON CONFLICT DO NOTHING RETURNING 1",
        message_id,
    )
    return row is not None

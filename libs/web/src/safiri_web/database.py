"""The services' PostgreSQL pools: asyncpg's, without a round trip on every release.

asyncpg resets a connection each time it goes back to the pool (``UNLISTEN *``, ``RESET ALL``,
``CLOSE ALL``, unlocking advisory locks: one more round trip per acquire), for session state
that Safiri never sets: it holds no cursors, ``SET``s nothing and takes only transaction-scoped
advisory locks. Profiled under load that reset was 4-8 % of each service's event loop. A
connection left inside a transaction (which ``async with conn.transaction()`` never does) is
still rolled back.
"""

from __future__ import annotations

from typing import Any

import asyncpg

__all__ = ["database_pool", "keep_session"]


async def keep_session(conn: asyncpg.Connection[Any]) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


def database_pool(url: str, *, min_size: int, max_size: int) -> asyncpg.Pool[Any]:
    """``asyncpg.create_pool`` (await it, or use it as ``async with``) with ``keep_session``."""
    return asyncpg.create_pool(url, min_size=min_size, max_size=max_size, reset=keep_session)

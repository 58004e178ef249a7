"""safiri_web.database_pool on a real PostgreSQL: no reset round trip on release, yet a
connection never comes back from the pool inside a transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from safiri_web import database_pool

pytestmark = pytest.mark.integration


async def test_a_released_connection_keeps_its_session_but_never_an_open_transaction(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    url = await make_database("pool_it")
    async with database_pool(url, min_size=1, max_size=1) as pool:
        async with pool.acquire() as conn:
            await conn.execute("SET application_name = 'kept'")  # asyncpg's reset would undo it
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE left_open (n int)")
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW application_name") == "kept"  # no RESET ALL ran
            assert await conn.fetchval("SELECT to_regclass('left_open')") is None  # rolled back

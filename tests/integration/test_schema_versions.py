"""A service's schema at start-up, against the machine's PostgreSQL: applied once per version,
so a replica starting beside one under load takes no lock on the tables in use, and a new
version waits its turn with a short lock timeout instead of holding up the writers.

The first test is the rolling restart's start-up failure made deterministic: a payment replica
read ``payments`` in an open transaction and was about to update it when the next replica's
start ran the schema script (``CREATE INDEX IF NOT EXISTS`` holds a SHARE lock on the table,
``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` then waits for ACCESS EXCLUSIVE); PostgreSQL saw
the deadlock and failed the start-up (exit 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from loguru import logger

from safiri_payment.adapters.postgres import SCHEMA, apply_schema
from safiri_web import apply_schema as schema_once
from safiri_web import database_pool, schema_digest
from tests.conftest import eventually

pytestmark = pytest.mark.integration

NEXT_VERSION = SCHEMA + "\nALTER TABLE payments ADD COLUMN IF NOT EXISTS note text;\n"


@pytest_asyncio.fixture
async def pool(
    make_database: Callable[[str], Awaitable[str]], request: pytest.FixtureRequest
) -> AsyncIterator[asyncpg.Pool[Any]]:
    url = await make_database(f"schema_{request.node.name[5:30]}")  # within 63 characters
    pool = await database_pool(url, min_size=1, max_size=4)
    assert pool is not None
    try:
        yield pool
    finally:
        await pool.close()


async def waiting_on_a_lock(pool: asyncpg.Pool[Any], task: asyncio.Task[Any]) -> bool | None:
    """True once ``task`` is done or a backend of this database waits for a lock."""
    if task.done():
        return True
    waiting = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return True if waiting else None


async def test_a_start_beside_a_replica_mid_transaction_neither_waits_nor_deadlocks(
    pool: asyncpg.Pool[Any],
) -> None:
    assert await apply_schema(pool) == "applied"  # the first replica's start
    serving = await pool.acquire()  # the replica under load, mid-transaction
    try:
        transaction = serving.transaction()
        await transaction.start()
        await serving.fetchval("SELECT count(*) FROM payments")
        start = asyncio.create_task(apply_schema(pool))  # the next replica's start
        await eventually(lambda: waiting_on_a_lock(pool, start), timeout=10, what="the start")
        # The replica under load goes on with its transaction: it must not wait, nor be the
        # one PostgreSQL fails to break a deadlock.
        await serving.execute("UPDATE payments SET updated_at = now() WHERE false")
        await transaction.commit()
        assert await asyncio.wait_for(start, 10) == "current"
    finally:
        await pool.release(serving)


async def test_each_component_records_the_digest_of_the_script_it_applied(
    pool: asyncpg.Pool[Any],
) -> None:
    assert await apply_schema(pool) == "applied"
    assert await apply_schema(pool) == "current"
    rows = await pool.fetch("SELECT component, digest FROM schema_versions")
    assert [tuple(r) for r in rows] == [("payment", schema_digest(SCHEMA))]
    assert await schema_once(pool, "payment", NEXT_VERSION) == "applied"
    assert await pool.fetchval(
        "SELECT digest FROM schema_versions WHERE component = 'payment'"
    ) == schema_digest(NEXT_VERSION)
    columns = await pool.fetchval(
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'payments' AND column_name = 'note'"
    )
    assert columns == 1


async def test_replicas_starting_together_apply_it_once(pool: asyncpg.Pool[Any]) -> None:
    outcomes = await asyncio.gather(*(apply_schema(pool) for _ in range(3)))
    assert sorted(outcomes) == ["applied", "current", "current"]


async def test_a_new_version_gives_up_its_lock_wait_and_tries_again_until_it_can(
    pool: asyncpg.Pool[Any],
) -> None:
    assert await apply_schema(pool) == "applied"
    lines: list[dict[str, Any]] = []
    sink = logger.add(lambda m: lines.append(m.record["extra"] | {"msg": m.record["message"]}))
    reader = await pool.acquire()
    try:
        transaction = reader.transaction()
        await transaction.start()
        await reader.fetchval("SELECT count(*) FROM payments")  # ACCESS SHARE until commit
        upgrade = asyncio.create_task(
            schema_once(
                pool,
                "payment",
                NEXT_VERSION,
                lock_timeout_ms=100,
                attempts=30,
                backoff_seconds=0.05,
            )
        )

        async def retried() -> bool | None:
            return True if any(line.get("attempt") == 2 for line in lines) else None

        await eventually(retried, timeout=10, what="a second attempt")
        assert not upgrade.done()
        # Meanwhile the table is not locked for the others between attempts: a writer gets in.
        await asyncio.wait_for(
            pool.execute("UPDATE payments SET updated_at = now() WHERE false"), 5
        )
        await transaction.commit()
        assert await asyncio.wait_for(upgrade, 10) == "applied"
    finally:
        await pool.release(reader)
        logger.remove(sink)
    waits = [line for line in lines if line["msg"].startswith("schema change could not")]
    assert waits and {line["error"] for line in waits} == {"LockNotAvailableError"}
    assert [line["component"] for line in lines if line["msg"] == "schema applied"] == ["payment"]


async def test_a_lock_that_never_comes_fails_the_start_with_the_lock_error(
    pool: asyncpg.Pool[Any],
) -> None:
    assert await apply_schema(pool) == "applied"
    reader = await pool.acquire()
    try:
        async with reader.transaction():
            await reader.fetchval("SELECT count(*) FROM payments")
            with pytest.raises(asyncpg.LockNotAvailableError):
                await schema_once(
                    pool,
                    "payment",
                    NEXT_VERSION,
                    lock_timeout_ms=50,
                    attempts=2,
                    backoff_seconds=0.01,
                )
    finally:
        await pool.release(reader)
    # Nothing of the failed version stayed: the recorded script is still the old one.
    assert await pool.fetchval(
        "SELECT digest FROM schema_versions WHERE component = 'payment'"
    ) == schema_digest(SCHEMA)

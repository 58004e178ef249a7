"""A service's schema, applied at start-up without holding up (or deadlocking with) the
replicas already serving.

Every start used to run the whole schema script, idempotent (``IF NOT EXISTS``) but not
lock-free: ``CREATE INDEX IF NOT EXISTS`` takes a SHARE lock on its table and ``ALTER TABLE ...
ADD COLUMN IF NOT EXISTS`` an ACCESS EXCLUSIVE one even when there is nothing to do. A replica
starting beside one under load (a rolling restart) queued behind the other's transactions,
held up every writer behind it, and at times deadlocked with one of them; PostgreSQL broke the
deadlock by failing the start-up (tests/integration/test_schema_versions.py shows both).

So the script is applied once per version, as a migration tool would: ``schema_versions``
records, per component, the SHA-256 of the script last applied. A start whose script is the
recorded one reads that row (no lock on any table in use) and goes on. A start with a new
script applies it under an advisory lock (one replica at a time) with a short
``lock_timeout``: a DDL statement that cannot have its lock soon gives up rather than hold up
the writers queued behind it, and the attempt (like one that lost a deadlock) is made again
after a back-off.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Literal

import asyncpg
from loguru import logger

__all__ = ["VERSIONS_TABLE", "apply_schema", "schema_digest"]

VERSIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_versions (
    component text PRIMARY KEY,
    digest text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""

# Lock waits that end an attempt, not the start-up: the next attempt comes after a back-off.
_LOCK_CONFLICTS = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)


def schema_digest(schema: str) -> str:
    return hashlib.sha256(schema.encode()).hexdigest()


def _advisory_key(component: str) -> int:
    digest = hashlib.sha256(f"safiri schema {component}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _recorded(conn: Any, component: str) -> str | None:
    try:
        digest: str | None = await conn.fetchval(
            "SELECT digest FROM schema_versions WHERE component = $1", component
        )
    except asyncpg.UndefinedTableError:
        return None
    return digest


async def apply_schema(
    pool: asyncpg.Pool[Any],
    component: str,
    schema: str,
    *,
    lock_timeout_ms: int = 2000,
    attempts: int = 8,
    backoff_seconds: float = 0.25,
) -> Literal["current", "applied"]:
    """Apply ``schema`` (an idempotent script) unless it is the one ``component`` last
    applied. Returns ``"current"`` (nothing run) or ``"applied"``; raises the last lock
    conflict after ``attempts`` tries, or whatever else the script raised."""
    digest = schema_digest(schema)
    async with pool.acquire() as conn:
        if await _recorded(conn, component) == digest:
            logger.bind(component=component, digest=digest[:12]).debug("schema current")
            return "current"
        attempt = 0
        while True:
            attempt += 1
            try:
                async with conn.transaction():
                    # Replicas starting together take turns; the second finds it done.
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _advisory_key(component))
                    await conn.execute(VERSIONS_TABLE)
                    if await _recorded(conn, component) == digest:
                        return "current"
                    await conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                    await conn.execute(schema)
                    await conn.execute(
                        "INSERT INTO schema_versions (component, digest) VALUES ($1, $2)"
                        " ON CONFLICT (component)"
                        " DO UPDATE SET digest = excluded.digest, applied_at = now()",
                        component,
                        digest,
                    )
            except _LOCK_CONFLICTS as exc:
                if attempt >= attempts:
                    raise
                wait = backoff_seconds * 2 ** (attempt - 1)
                logger.bind(
                    component=component,
                    attempt=attempt,
                    error=type(exc).__name__,
                    wait_seconds=wait,
                ).warning("schema change could not take its locks; trying again")
                await asyncio.sleep(wait)
                continue
            logger.bind(component=component, digest=digest[:12], attempt=attempt).info(
                "schema applied"
            )
            return "applied"

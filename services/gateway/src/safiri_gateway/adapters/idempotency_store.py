"""Idempotency keys kept in PostgreSQL, so a replay survives a gateway restart."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
from loguru import logger

from ..domain.idempotency import IdempotencyRecord, StoredResponse
from ..service_layer.ports import Claim

__all__ = ["PostgresIdempotencyStore"]

# One statement decides who owns the key: a new key is inserted, a stale in-flight row for the
# same body is taken over, and anything else returns no row. The row lock taken by ON CONFLICT
# makes two concurrent requests see each other, never both win.
_CLAIM = """
INSERT INTO idempotency_keys AS k (client, key, fingerprint, owner, locked_until, trace_id)
VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)
ON CONFLICT (client, key) DO UPDATE
    SET owner = EXCLUDED.owner, locked_until = EXCLUDED.locked_until,
        trace_id = EXCLUDED.trace_id, created_at = now()
    WHERE k.state = 'in_flight' AND k.locked_until < now()
      AND k.fingerprint = EXCLUDED.fingerprint
RETURNING owner
"""
_EXISTING = """
SELECT fingerprint, state, response_status, response_body, trace_id
FROM idempotency_keys WHERE client = $1 AND key = $2
"""
_COMPLETE = """
UPDATE idempotency_keys
SET state = 'completed', response_status = $4, response_body = $5::jsonb,
    locked_until = NULL, completed_at = now()
WHERE client = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'
"""
_RELEASE = """
DELETE FROM idempotency_keys
WHERE client = $1 AND key = $2 AND owner = $3 AND state = 'in_flight'
"""


class PostgresIdempotencyStore:
    def __init__(self, pool: asyncpg.Pool[Any], lock_seconds: float = 30.0) -> None:
        self._pool = pool
        self._lock_seconds = lock_seconds

    async def claim(
        self, client: str, key: str, fingerprint: str, trace_id: str | None
    ) -> Claim | IdempotencyRecord:
        owner = uuid.uuid4()
        # The earlier owner may release its row between our INSERT and SELECT; try again then.
        for _ in range(3):
            won = await self._pool.fetchval(
                _CLAIM, client, key, fingerprint, owner, self._lock_seconds, trace_id
            )
            if won is not None:
                return Claim(client, key, str(owner))
            row = await self._pool.fetchrow(_EXISTING, client, key)
            if row is not None:
                return _record(row)
        return IdempotencyRecord(fingerprint, None)  # still churning: ask the client to retry

    async def complete(self, claim: Claim, response: StoredResponse) -> None:
        result = await self._pool.execute(
            _COMPLETE,
            claim.client,
            claim.key,
            uuid.UUID(claim.owner),
            response.status,
            json.dumps(response.body),
        )
        if result != "UPDATE 1":
            logger.warning("idempotency key was taken over before its answer was stored")

    async def release(self, claim: Claim) -> None:
        await self._pool.execute(_RELEASE, claim.client, claim.key, uuid.UUID(claim.owner))

    async def check_alive(self) -> None:
        await self._pool.fetchval("SELECT 1")


def _record(row: asyncpg.Record) -> IdempotencyRecord:
    response = None
    if row["state"] == "completed":
        response = StoredResponse(row["response_status"], json.loads(row["response_body"]))
    return IdempotencyRecord(row["fingerprint"], response, row["trace_id"])

"""Transactional outbox: events are rows written with the state change, published later.

The row keeps the trace context of the transaction that wrote it, so the relay publishes under
the purchase's trace even though it runs in its own task, seconds or a restart later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractExchange
from asyncpg.pool import PoolConnectionProxy
from loguru import logger

from safiri_telemetry import context_from_carrier, inject_carrier, publish_span

from .metrics import MessagingMetrics
from .topology import EVENTS_EXCHANGE

__all__ = ["OUTBOX_SCHEMA", "OutboxRelay", "add_to_outbox", "queue_statement"]

NOTIFY_CHANNEL = "safiri_outbox"

# What a broker or database outage raises. A robust channel that lost its connection raises
# ChannelInvalidStateError (a RuntimeError, not an AMQPError) until it is restored, and a
# robust connection without a transport a bare RuntimeError.
_TRANSIENT = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    aio_pika.exceptions.AMQPError,
    RuntimeError,
)

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    routing_key text NOT NULL,
    payload jsonb NOT NULL,
    trace_context jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    claimed_until timestamptz
);
-- A relay's lease on an unpublished row (OutboxRelay). Added to outboxes made before it; looked
-- up first, because ALTER TABLE locks the table exclusively even when the column is there, and
-- every service start would wait for (and hold up) the outbox's writers.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'outbox'::regclass
                   AND attname = 'claimed_until' AND NOT attisdropped) THEN
        ALTER TABLE outbox ADD COLUMN IF NOT EXISTS claimed_until timestamptz;
    END IF;
END $$;
-- The relay's claim walks this in id order and reads claimed_until from the row. The column is in
-- no index, so claiming (and releasing) can be a heap-only update that touches no index.
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE TABLE IF NOT EXISTS inbox (
    message_id uuid PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);
"""


async def add_to_outbox(
    conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any],
    routing_key: str,
    payload: Mapping[str, Any],
) -> uuid.UUID:
    """Queue an event in the caller's transaction; it is published only if that commits."""
    message_id = uuid.uuid4()
    statement, args = queue_statement([(routing_key, payload)], message_ids=[message_id])
    await conn.execute(statement, *args)
    return message_id


def queue_statement(
    messages: Sequence[tuple[str, Mapping[str, Any]]],
    *,
    ctes: str = "",
    args: Sequence[Any] = (),
    message_ids: Sequence[uuid.UUID] | None = None,
) -> tuple[str, list[Any]]:
    """One statement (text and arguments) queueing every ``(routing_key, payload)`` in the
    caller's transaction, under the trace context active now, and waking the relay on commit.

    ``ctes`` are the caller's own data-modifying ``WITH`` clauses (``name AS (...)``, comma
    separated, using ``$1`` to ``$len(args)``) to run in the same statement, the same round
    trip; without messages the statement is those alone.
    """
    n = len(args)
    if not messages:
        if not ctes:
            raise ValueError("nothing to queue and nothing else to do")
        return f"WITH {ctes} SELECT", list(args)
    ids = list(message_ids) if message_ids is not None else [uuid.uuid4() for _ in messages]
    queue = (
        f"queued AS (INSERT INTO outbox (message_id, routing_key, payload, trace_context)"
        f" SELECT m.id, m.key, m.payload::jsonb, ${n + 4}::jsonb"
        f" FROM unnest(${n + 1}::uuid[], ${n + 2}::text[], ${n + 3}::text[])"
        f" WITH ORDINALITY AS m(id, key, payload, position) ORDER BY m.position RETURNING 1)"
    )
    # pg_notify is delivered only on commit, once however many rows (or calls) it announces.
    statement = (
        f"WITH {ctes + ', ' if ctes else ''}{queue}"
        f" SELECT pg_notify(${n + 5}, '') WHERE EXISTS (SELECT FROM queued)"
    )
    return statement, [
        *args,
        ids,
        [key for key, _ in messages],
        [json.dumps(payload) for _, payload in messages],
        json.dumps(inject_carrier()),
        NOTIFY_CHANNEL,
    ]


def _lost(conn: PoolConnectionProxy[Any]) -> bool:
    """Closed, or already taken back by the pool (asyncpg does that when it terminates)."""
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:
        return True


# A pass claims a batch (one autocommitted statement: no transaction, no row lock outlives it),
# publishes it with confirms, then settles it (one more statement). The claim takes the oldest
# unpublished rows nobody holds a live lease on; SKIP LOCKED keeps two relays' concurrent
# claims disjoint, and a row another relay claimed meanwhile is re-checked against its new
# claimed_until and left out.
_CLAIM = """
WITH claimed AS (
    UPDATE outbox SET claimed_until = now() + $2::interval
    WHERE id IN (
        SELECT id FROM outbox
        WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
    )
    RETURNING id, message_id, routing_key, payload, trace_context, claimed_until
)
SELECT * FROM claimed ORDER BY id
"""

# Marks the rows the broker confirmed ($1) published, and hands the others ($2) back at once,
# if they are still under this pass's claim ($3: its claimed_until; a row whose lease ran out
# and that another relay claimed since is that relay's now).
_SETTLE = """
UPDATE outbox SET
    published_at = CASE WHEN id = ANY($1::bigint[]) THEN now() END,
    claimed_until = CASE WHEN id = ANY($1::bigint[]) THEN claimed_until END
WHERE published_at IS NULL
  AND (id = ANY($1::bigint[]) OR (id = ANY($2::bigint[]) AND claimed_until = $3))
"""

# How long a relay being stopped mid-batch may take to hand its rows back (else the lease does).
_SETTLE_ON_STOP_SECONDS = 1.0


class OutboxRelay:
    """Publishes unsent outbox rows with publisher confirms and ``mandatory``.

    Woken by NOTIFY on commit for low latency, and by a timer so nothing waits on a lost
    notification. A pass costs two database round trips, and holds neither a transaction nor a
    connection while the broker confirms: it claims a batch (``claimed_until`` a ``lease``
    ahead), publishes it, then marks what was confirmed published and releases the rest for
    the next pass. Several relays (replicas) may run at once: their claims are disjoint. A
    relay that dies holding a claim leaves its rows to any relay once the lease has run out:
    published at least once, as consumers expect (they deduplicate with the inbox).

    The lease defaults to 3 x ``confirm_timeout``. A pass's publishes wait for their confirms
    concurrently, each at most ``confirm_timeout``, so a pass normally settles well within one
    confirm timeout; the other two cover waiting for a pool connection to settle with and
    event-loop stalls. A lease that ran out before its pass settled costs a duplicate, never a
    loss; a long one only delays the rows of a relay that died (15 s by default, within the
    30 s the chaos checker allows an unpublished row).
    """

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        exchange: AbstractExchange,
        metrics: MessagingMetrics,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        confirm_timeout: float = 5.0,
        lease: float | None = None,
    ) -> None:
        self._pool = pool
        self._exchange = exchange
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._confirm_timeout = confirm_timeout
        # Seconds a pass's claim keeps its rows from other relays.
        self.lease: float = 3 * confirm_timeout if lease is None else lease
        self._wake = asyncio.Event()

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        listener: PoolConnectionProxy[Any] | None = None
        try:
            while True:
                if listener is None or _lost(listener):
                    # First start, or the database restarted under the LISTEN connection:
                    # without a new one the relay would only poll, one connection short.
                    try:
                        listener = await self._listen(listener)
                    except Exception:
                        logger.exception("outbox relay cannot listen; polling")
                        listener = None
                try:
                    while await self.publish_pending() == self._batch_size:
                        pass
                except TimeoutError:
                    logger.warning("outbox publish not confirmed in time; will retry")
                except _TRANSIENT as exc:
                    logger.bind(error=repr(exc)).warning("outbox relay failed; will retry")
                except Exception:
                    # Whatever else: the relay must outlive it, or the outbox never drains.
                    logger.exception("outbox relay failed unexpectedly; will retry")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                self._wake.clear()
        finally:
            if listener is not None:
                with contextlib.suppress(*_TRANSIENT):
                    if not _lost(listener):
                        await listener.remove_listener(NOTIFY_CHANNEL, self._on_notify)
                        await self._pool.release(listener)

    async def _listen(
        self, old: PoolConnectionProxy[Any] | None
    ) -> PoolConnectionProxy[Any] | None:
        """A pool connection LISTENing for commits, in place of ``old``; ``None`` if the
        database cannot be reached now (the relay polls until the next try)."""
        if old is not None:
            # asyncpg hands a connection that closed back to its pool by itself; what is left
            # is to make sure the old one is gone (releasing it again would raise).
            with contextlib.suppress(Exception):
                old.terminate()
        try:
            listener = await self._pool.acquire()
        except _TRANSIENT as exc:
            logger.bind(error=repr(exc)).warning("outbox relay cannot listen yet; polling")
            return None
        try:
            await listener.add_listener(NOTIFY_CHANNEL, self._on_notify)
            # Wake the loop when the connection dies, so it listens again at once.
            listener.add_termination_listener(self._on_notify)
        except _TRANSIENT as exc:
            logger.bind(error=repr(exc)).warning("outbox relay cannot listen yet; polling")
            with contextlib.suppress(*_TRANSIENT):
                await self._pool.release(listener)
            return None
        if old is not None:
            logger.info("outbox relay listening again after losing its connection")
        self._wake.set()  # whatever was committed meanwhile is waiting
        return listener

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows it published.

        Raises what the first failed publish raised, once the batch is settled: the rows the
        broker confirmed are marked published, the others are released for the next pass.
        """
        rows = await self._claim()
        if not rows:
            return 0
        confirmed: list[int] = []
        try:
            outcomes = await asyncio.gather(
                *(self._publish(row, confirmed) for row in rows), return_exceptions=True
            )
        except asyncio.CancelledError:
            # Stopped mid-batch (the service is shutting down): hand the rows back now, as the
            # rolled-back transaction used to, rather than leave them to the lease.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_SETTLE_ON_STOP_SECONDS):
                    await self._settle(rows, confirmed)
            raise
        await self._settle(rows, confirmed)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(rows)

    async def _claim(self) -> list[asyncpg.Record]:
        """Claim the next batch for this relay's lease: the rows, in id order."""
        return await self._pool.fetch(
            _CLAIM, self._batch_size, datetime.timedelta(seconds=self.lease)
        )

    async def _settle(self, rows: Sequence[asyncpg.Record], confirmed: Sequence[int]) -> None:
        done = set(confirmed)
        await self._pool.execute(
            _SETTLE,
            list(done),
            [row["id"] for row in rows if row["id"] not in done],
            rows[0]["claimed_until"],
        )

    async def _publish(self, row: asyncpg.Record, confirmed: list[int]) -> None:
        routing_key: str = row["routing_key"]
        message_id = str(row["message_id"])
        headers: dict[str, Any] = {}
        parent = context_from_carrier(json.loads(row["trace_context"]))
        with publish_span(EVENTS_EXCHANGE, routing_key, message_id, headers, parent=parent):
            message = aio_pika.Message(
                body=row["payload"].encode(),
                message_id=message_id,
                type=routing_key,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers=headers,
            )
            await self._exchange.publish(
                message, routing_key=routing_key, mandatory=True, timeout=self._confirm_timeout
            )
        confirmed.append(row["id"])
        self._metrics.sent.labels(EVENTS_EXCHANGE, routing_key).inc()

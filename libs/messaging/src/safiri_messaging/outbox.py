"""Transactional outbox: events are rows written with the state change, published later.

The row keeps the trace context of the transaction that wrote it, so the relay publishes under
the purchase's trace even though it runs in its own task, seconds or a restart later.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    published_at timestamptz
);
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


class OutboxRelay:
    """Publishes unsent outbox rows with publisher confirms and ``mandatory``.

    Woken by NOTIFY on commit for low latency, and by a timer so nothing waits on a lost
    notification. Rows are locked with SKIP LOCKED, so several relays may run at once.
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
    ) -> None:
        self._pool = pool
        self._exchange = exchange
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._confirm_timeout = confirm_timeout
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
        """Publish one batch; returns how many rows it published."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, message_id, routing_key, payload, trace_context FROM outbox"
                " WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch_size,
            )
            if not rows:
                return 0
            await asyncio.gather(*(self._publish(row) for row in rows))
            await conn.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
        return len(rows)

    async def _publish(self, row: asyncpg.Record) -> None:
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
        self._metrics.sent.labels(EVENTS_EXCHANGE, routing_key).inc()

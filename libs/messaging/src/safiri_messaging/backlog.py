"""Backlog gauges: the work waiting in the broker's queues and in the service's outbox.

Neither can be read at scrape time without blocking the event loop (the broker answers a
passive ``queue.declare``, the outbox a query), so one task per service refreshes the gauges
every few seconds and ``/metrics`` serves the last reading.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import asyncpg
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError
from loguru import logger

from .metrics import MessagingMetrics
from .topology import QueueSpec

__all__ = ["BacklogMonitor", "QueueStats"]

# A robust connection between two attempts raises a bare RuntimeError ("Connection was not
# opened"); ChannelInvalidStateError is one too.
_BROKER_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, TimeoutError, RuntimeError)
_DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

_OUTBOX_BACKLOG = """
SELECT count(*) AS backlog,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age
FROM outbox WHERE published_at IS NULL
"""


class QueueStats:
    """Reads a queue's ready messages and consumers with a passive declare, on its own channel.

    Never on a channel that consumes or declared the queue robustly: aio-pika's robust channel
    answers a passive declare of a queue it already knows from its cache, without asking the
    broker, so the count would be the one from start-up. A failed passive declare (the queue
    was deleted) makes the broker close the channel; the next read opens a new one.
    """

    def __init__(self, connection: AbstractRobustConnection, timeout: float) -> None:
        self._connection = connection
        self._timeout = timeout
        self._channel: AbstractRobustChannel | None = None

    async def read(self, queue: str) -> tuple[int, int]:
        """``(ready messages, consumers)``; raises the broker's error if the queue is missing."""
        try:
            async with asyncio.timeout(self._timeout):
                if self._channel is None or self._channel.is_closed:
                    await self.close()
                    self._channel = await self._connection.channel(publisher_confirms=False)
                declared = await self._channel.declare_queue(queue, passive=True, robust=False)
        except _BROKER_ERRORS:
            await self.close()
            raise
        result = declared.declaration_result
        return result.message_count or 0, result.consumer_count or 0

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(*_BROKER_ERRORS):
                await channel.close()


class BacklogMonitor:
    """Refreshes the queue, dead-letter-queue and outbox backlog gauges every ``interval`` s."""

    def __init__(
        self,
        metrics: MessagingMetrics,
        connection: AbstractRobustConnection,
        pool: asyncpg.Pool[Any],
        queues: Iterable[QueueSpec],
        *,
        interval: float = 5.0,
        timeout: float = 5.0,
    ) -> None:
        self._metrics = metrics
        self._pool = pool
        self._queues = [name for q in queues for name in (q.name, q.dead_letter_queue)]
        self._stats = QueueStats(connection, timeout)
        self._interval = interval
        self._timeout = timeout

    async def run(self) -> None:
        """Refresh until cancelled; a failed reading is logged, never fatal."""
        try:
            while True:
                try:
                    await self.refresh()
                except Exception:
                    logger.exception("backlog gauges not refreshed")
                await asyncio.sleep(self._interval)
        finally:
            await self.close()

    async def refresh(self) -> None:
        """Read every queue, its dead-letter queue and the outbox once."""
        for queue in self._queues:
            await self._refresh_queue(queue)
        await self._refresh_outbox()

    async def close(self) -> None:
        await self._stats.close()

    async def _refresh_queue(self, queue: str) -> None:
        try:
            ready, consumers = await self._stats.read(queue)
        except _BROKER_ERRORS as exc:
            # No reading is better than a stale one: the series disappears until it is back.
            self._metrics.queue_backlog.remove(queue)
            self._metrics.queue_consumers.remove(queue)
            logger.bind(queue=queue, error=repr(exc)).warning("queue depth not read")
            return
        self._metrics.queue_backlog.labels(queue).set(ready)
        self._metrics.queue_consumers.labels(queue).set(consumers)

    async def _refresh_outbox(self) -> None:
        try:
            row = await self._pool.fetchrow(_OUTBOX_BACKLOG, timeout=self._timeout)
        except _DATABASE_ERRORS as exc:
            logger.bind(error=repr(exc)).warning("outbox backlog not read")
            return
        assert row is not None
        self._metrics.outbox_backlog.set(row["backlog"])
        self._metrics.outbox_oldest_age.set(max(0.0, row["oldest_age"]))

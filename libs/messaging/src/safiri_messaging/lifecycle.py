"""Everything a service does with the broker, started and stopped as one unit.

One named robust connection; a publisher channel feeding the outbox relay; a consumer channel
with explicit prefetch on the service's queue; the backlog monitor. On exit the consumer is
cancelled first, so no message is taken that cannot be finished, then the tasks, then the
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from aio_pika.abc import AbstractRobustConnection
from loguru import logger

from .backlog import BacklogMonitor
from .connection import connect, consumer_channel, publisher_channel
from .consumer import Handler, InFlight, consume
from .metrics import MessagingMetrics
from .outbox import OutboxRelay
from .topology import QueueSpec, declare_events_exchange, declare_queue

__all__ = ["broker_connected", "repeat_forever", "running_messaging", "stop_task"]

# Within aiohttp's shutdown_timeout (10 s, safiri_web.runner) and Kubernetes' grace period.
DRAIN_SECONDS = 8.0


def broker_connected(connection: AbstractRobustConnection) -> None:
    """A readiness check: raises unless ``connection`` is connected right now.

    ``is_closed`` alone is not enough: a robust connection that lost the broker is not closed
    while it reconnects, it just has no transport.
    """
    if connection.is_closed:
        raise ConnectionError("broker connection closed")
    if connection.transport is None or not connection.connected.is_set():
        raise ConnectionError("broker connection lost; reconnecting")


async def repeat_forever(name: str, step: Callable[[], Awaitable[Any]], interval: float) -> None:
    """Run ``step`` every ``interval`` seconds until cancelled; a failure is logged, never fatal."""
    while True:
        try:
            await step()
        except Exception:
            logger.bind(task=name).exception("background step failed")
        await asyncio.sleep(interval)


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has finished."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running_messaging(
    *,
    amqp_url: str,
    connection_name: str,
    pool: asyncpg.Pool[Any],
    queue: QueueSpec,
    handler: Handler,
    metrics: MessagingMetrics,
    prefetch: int,
    poll_interval: float,
    also: Sequence[tuple[QueueSpec, Handler]] = (),
) -> AsyncIterator[AbstractRobustConnection]:
    """Relay the outbox, consume ``queue`` with ``handler`` (and each of ``also``'s queues
    with its handler, on a channel of its own) and watch the backlogs until exit."""
    connection = await connect(amqp_url, connection_name)
    try:
        exchange = await declare_events_exchange(await publisher_channel(connection))
        consumers = []
        for spec, handles in [(queue, handler), *also]:
            channel = await consumer_channel(connection, prefetch)
            consumers.append((await declare_queue(channel, spec), handles))
        relay = asyncio.create_task(OutboxRelay(pool, exchange, metrics).run())
        queues = [queue, *(spec for spec, _ in also)]
        backlog = BacklogMonitor(metrics, connection, pool, queues, interval=poll_interval)
        monitor = asyncio.create_task(backlog.run())
        in_flight = InFlight()
        tags = [
            (declared, await consume(declared, handles, metrics, in_flight))
            for declared, handles in consumers
        ]
        try:
            yield connection
        finally:
            # Graceful: no new deliveries, then the messages in flight finish and are
            # acknowledged (within the shutdown deadline), then the relay publishes what they
            # committed, then everything stops.
            for declared, tag in tags:
                await declared.cancel(tag)
            if not await in_flight.drain(DRAIN_SECONDS):
                logger.bind(in_flight=in_flight.count).warning(
                    "messages still in flight at the shutdown deadline; they will be redelivered"
                )
            await stop_task(monitor)
            await stop_task(relay)
    finally:
        await connection.close()

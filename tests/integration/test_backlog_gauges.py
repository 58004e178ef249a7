"""Backlog gauges on a real RabbitMQ and PostgreSQL: queue depths, dead letters, the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection
from prometheus_client import CollectorRegistry

from safiri_messaging import (
    OUTBOX_SCHEMA,
    BacklogMonitor,
    Envelope,
    MessagingMetrics,
    OutboxRelay,
    QueueSpec,
    add_to_outbox,
    consume,
    consumer_channel,
    declare_events_exchange,
    declare_queue,
    publisher_channel,
)
from tests.conftest import eventually

pytestmark = pytest.mark.integration

BACKLOG = "messaging_queue_backlog_messages"
CONSUMERS = "messaging_queue_consumers"


@pytest_asyncio.fixture(scope="module")
async def pool(make_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(await make_database("backlog_it"), min_size=1, max_size=4)
    assert pool is not None
    await pool.execute(OUTBOX_SCHEMA)
    try:
        yield pool
    finally:
        await pool.close()


def unique_spec(purpose: str, **kwargs: Any) -> QueueSpec:
    suffix = uuid.uuid4().hex[:6]
    return QueueSpec(f"it-{purpose}-{suffix}", (f"it.{purpose}.{suffix}",), **kwargs)


def per_queue(registry: CollectorRegistry, name: str, queue: str) -> float | None:
    return registry.get_sample_value(name, {"messaging_destination_name": queue})


def reaches(
    registry: CollectorRegistry, name: str, queue: str, value: float
) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return per_queue(registry, name, queue) == value

    return probe


@contextlib.asynccontextmanager
async def running(monitor: BacklogMonitor) -> AsyncIterator[None]:
    task = asyncio.create_task(monitor.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_queue_backlog_follows_the_broker_while_the_same_connection_consumes(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection
) -> None:
    spec = unique_spec("backlog")
    channel = await consumer_channel(connection, 10)
    queue = await declare_queue(channel, spec)
    exchange = await declare_events_exchange(channel)
    registry = CollectorRegistry()
    metrics = MessagingMetrics(registry)
    key = spec.routing_keys[0]

    async with running(BacklogMonitor(metrics, connection, pool, [spec], interval=0.05)):
        for n in range(5):
            body = f'{{"n": {n}}}'.encode()
            await exchange.publish(aio_pika.Message(body, message_id=f"m{n}"), routing_key=key)
        await eventually(reaches(registry, BACKLOG, spec.name, 5), what="a backlog of 5")
        assert per_queue(registry, CONSUMERS, spec.name) == 0
        assert per_queue(registry, BACKLOG, spec.dead_letter_queue) == 0

        processed: list[int] = []

        async def handler(envelope: Envelope) -> None:
            processed.append(envelope.field("n", int))

        await consume(queue, handler, metrics)
        await eventually(reaches(registry, BACKLOG, spec.name, 0), what="the backlog to drain")
        await eventually(reaches(registry, CONSUMERS, spec.name, 1), what="one consumer")

        async def all_processed() -> bool:
            # Delivered is not yet handled: the backlog counts only messages still waiting.
            return sorted(processed) == [0, 1, 2, 3, 4]

        await eventually(all_processed, what="the five messages handled")

        await exchange.publish(aio_pika.Message(b"{oops", message_id="bad"), routing_key=key)
        await eventually(
            reaches(registry, BACKLOG, spec.dead_letter_queue, 1), what="one dead letter"
        )
        assert per_queue(registry, BACKLOG, spec.name) == 0


async def test_a_deleted_queue_loses_its_series_and_the_other_queues_are_still_read(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection
) -> None:
    spec = unique_spec("deleted")
    channel = await consumer_channel(connection, 10)
    await declare_queue(channel, spec)
    registry = CollectorRegistry()
    monitor = BacklogMonitor(MessagingMetrics(registry), connection, pool, [spec])
    try:
        await monitor.refresh()
        assert per_queue(registry, BACKLOG, spec.name) == 0

        # The failed passive declare closes the monitor's channel; the next read needs another.
        await channel.queue_delete(spec.name)
        await monitor.refresh()
        assert per_queue(registry, BACKLOG, spec.name) is None
        assert per_queue(registry, CONSUMERS, spec.name) is None
        assert per_queue(registry, BACKLOG, spec.dead_letter_queue) == 0

        await declare_queue(channel, spec)
        await monitor.refresh()
        assert per_queue(registry, BACKLOG, spec.name) == 0
    finally:
        await monitor.close()
        await channel.queue_delete(spec.name)
        await channel.queue_delete(spec.dead_letter_queue)


async def test_outbox_backlog_and_the_age_of_its_oldest_unsent_row(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection
) -> None:
    registry = CollectorRegistry()
    metrics = MessagingMetrics(registry)
    monitor = BacklogMonitor(metrics, connection, pool, [])

    def outbox() -> tuple[float | None, float | None]:
        return (
            registry.get_sample_value("safiri_outbox_backlog_messages"),
            registry.get_sample_value("safiri_outbox_oldest_age_seconds"),
        )

    try:
        await pool.execute("UPDATE outbox SET published_at = now() WHERE published_at IS NULL")
        await monitor.refresh()
        assert outbox() == (0, 0)

        spec = unique_spec("outbox")
        key = spec.routing_keys[0]
        await declare_queue(await consumer_channel(connection, 10), spec)
        async with pool.acquire() as conn, conn.transaction():
            ids = [await add_to_outbox(conn, key, {"n": n}) for n in range(3)]
        await pool.execute(
            "UPDATE outbox SET created_at = now() - interval '90 seconds' WHERE message_id = $1",
            ids[1],
        )
        await monitor.refresh()
        backlog, age = outbox()
        assert backlog == 3
        assert age is not None and 90 <= age < 120

        exchange = await declare_events_exchange(await publisher_channel(connection))
        relay = OutboxRelay(pool, exchange, metrics)
        while await relay.publish_pending():
            pass
        await monitor.refresh()
        assert outbox() == (0, 0)
    finally:
        await monitor.close()


async def test_a_redelivered_message_is_counted_for_its_queue(
    connection: AbstractRobustConnection,
) -> None:
    spec = unique_spec("redelivered")
    channel = await consumer_channel(connection, 5)
    queue = await declare_queue(channel, spec)
    registry = CollectorRegistry()
    attempts: list[bool] = []

    async def fails_once(envelope: Envelope) -> None:
        attempts.append(envelope.redelivered)
        if len(attempts) == 1:
            raise RuntimeError("database briefly down")

    await consume(queue, fails_once, MessagingMetrics(registry))
    exchange = await declare_events_exchange(channel)
    await exchange.publish(
        aio_pika.Message(b"{}", message_id="r1"), routing_key=spec.routing_keys[0]
    )

    ok = {"messaging_destination_name": spec.name, "outcome": "ok"}

    async def processed() -> bool:
        return registry.get_sample_value("messaging_client_consumed_messages_total", ok) == 1

    await eventually(processed, what="the retried message to be processed")
    assert attempts == [False, True]
    redelivered = per_queue(registry, "messaging_client_redelivered_messages_total", spec.name)
    assert redelivered == 1

"""The outbox relay's lease, on a real PostgreSQL and a real RabbitMQ vhost.

A pass claims a batch in one autocommitted statement (``claimed_until`` a lease ahead), publishes
it with publisher confirms holding no transaction and no connection, then marks what the broker
confirmed in one more statement; what it could not publish it releases in that same statement.
A relay that dies holding a claim delays its rows by the lease, never loses them.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractExchange, AbstractQueue, AbstractRobustConnection
from prometheus_client import CollectorRegistry

from safiri_messaging import (
    OUTBOX_SCHEMA,
    BacklogMonitor,
    MessagingMetrics,
    OutboxRelay,
    QueueSpec,
    add_to_outbox,
    connect,
    consumer_channel,
    declare_events_exchange,
    declare_queue,
    publisher_channel,
)
from tests.conftest import eventually
from tests.integration.wire import PausableProxy, counted_pool

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module")
async def url(make_database: Callable[[str], Awaitable[str]]) -> str:
    url = await make_database("outbox_lease")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(OUTBOX_SCHEMA)
    finally:
        await conn.close()
    return url


@pytest_asyncio.fixture
async def pool(url: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    """The test's own view of the database; every test starts with an empty outbox."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=6)
    assert pool is not None
    await pool.execute("TRUNCATE outbox")
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def exchange(connection: AbstractRobustConnection) -> AbstractExchange:
    return await declare_events_exchange(await publisher_channel(connection))


async def bound_queue(connection: AbstractRobustConnection, key: str) -> AbstractQueue:
    channel = await consumer_channel(connection, 100)
    name = f"it-lease-{uuid.uuid4().hex[:8]}"
    queue = await declare_queue(channel, QueueSpec(name, (key,)))
    return queue


async def queue_rows(pool: asyncpg.Pool[Any], key: str, count: int) -> list[uuid.UUID]:
    async with pool.acquire() as conn, conn.transaction():
        return [await add_to_outbox(conn, key, {"n": n}) for n in range(count)]


async def received(queue: AbstractQueue, count: int) -> list[str]:
    """The message ids of the next ``count`` messages (acknowledged), then that none is left."""
    ids: list[str] = []
    for _ in range(count):
        message = await eventually(lambda: queue.get(fail=False), what=f"message {len(ids) + 1}")
        await message.ack()
        assert message.message_id is not None
        ids.append(message.message_id)
    assert await queue.get(fail=False) is None, "a message more than was published"
    return ids


async def test_a_pass_costs_two_round_trips_and_an_empty_one_one(
    url: str, pool: asyncpg.Pool[Any], connection: AbstractRobustConnection, exchange: Any
) -> None:
    """Claim, then mark: was BEGIN, SELECT ... FOR UPDATE SKIP LOCKED, UPDATE, COMMIT (4), the
    transaction open across the broker's confirms; an empty pass was BEGIN, SELECT, COMMIT."""
    key = f"it.lease.trips.{uuid.uuid4().hex[:6]}"
    queue = await bound_queue(connection, key)
    async with counted_pool(url) as (counter, counted):
        relay = OutboxRelay(counted, exchange, MessagingMetrics(CollectorRegistry()))
        await queue_rows(pool, key, 1)
        assert await relay.publish_pending() == 1  # warm-up
        assert await relay.publish_pending() == 0

        await queue_rows(pool, key, 1)
        before = counter.round_trips
        assert await relay.publish_pending() == 1
        one_row = counter.round_trips - before

        before = counter.round_trips
        assert await relay.publish_pending() == 0
        empty = counter.round_trips - before
    assert (one_row, empty) == (2, 1)
    assert len(await received(queue, 2)) == 2


async def test_a_relay_that_dies_holding_a_claim_leaves_its_rows_to_another_after_the_lease(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection, exchange: Any
) -> None:
    key = f"it.lease.dead.{uuid.uuid4().hex[:6]}"
    queue = await bound_queue(connection, key)
    ids = await queue_rows(pool, key, 2)
    metrics = MessagingMetrics(CollectorRegistry())
    dead = OutboxRelay(pool, exchange, metrics, lease=1.0)
    other = OutboxRelay(pool, exchange, metrics)  # the default lease, 3 x the confirm timeout

    claimed = await dead._claim()  # ... and then the process is killed: nothing more
    assert [row["message_id"] for row in claimed] == ids
    (dead_until,) = {row["claimed_until"] for row in claimed}

    # Within the lease the rows are the dead relay's: another relay leaves them alone, and
    # they are still the outbox's backlog (unpublished is published_at IS NULL, claimed or not).
    assert await other.publish_pending() == 0
    assert await pool.fetchval("SELECT now() < $1::timestamptz", dead_until)
    registry = CollectorRegistry()
    await BacklogMonitor(MessagingMetrics(registry), connection, pool, []).refresh()
    assert registry.get_sample_value("safiri_outbox_backlog_messages") == 2

    # Past it they are anyone's: the other relay takes them, and only once it has expired
    # (by the database's clock: its claim began at or after the dead relay's lease ran out).
    async def published() -> int | None:
        return await other.publish_pending() or None  # (0 would end the wait)

    assert await eventually(published, timeout=15, what="the rows after the lease") == 2
    rows = await pool.fetch(
        "SELECT published_at, claimed_until FROM outbox WHERE message_id = ANY($1) ORDER BY id",
        ids,
    )
    assert all(row["published_at"] is not None for row in rows)
    lease = datetime.timedelta(seconds=other.lease)
    assert all(row["claimed_until"] - lease >= dead_until for row in rows)
    assert await received(queue, 2) == [str(i) for i in ids]


async def test_a_failed_publish_releases_its_claim_and_the_next_pass_publishes(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection, exchange: Any
) -> None:
    """Nothing is bound to ``lost`` yet, so the broker returns its message (mandatory); the
    confirmed ones of the batch are marked, the returned one is released at once (not left
    to its lease, a long one here) and goes out on the next pass once a queue is bound."""
    key = f"it.lease.ok.{uuid.uuid4().hex[:6]}"
    lost = f"it.lease.lost.{uuid.uuid4().hex[:6]}"
    queue = await bound_queue(connection, key)
    async with pool.acquire() as conn, conn.transaction():
        first = await add_to_outbox(conn, key, {"n": 1})
        returned = await add_to_outbox(conn, lost, {"n": 2})
        last = await add_to_outbox(conn, key, {"n": 3})
    relay = OutboxRelay(pool, exchange, MessagingMetrics(CollectorRegistry()), lease=600)

    with pytest.raises(aio_pika.exceptions.PublishError):
        await relay.publish_pending()
    state = {
        row["message_id"]: (row["published_at"] is not None, row["claimed_until"])
        for row in await pool.fetch("SELECT message_id, published_at, claimed_until FROM outbox")
    }
    assert state[returned] == (False, None)
    assert state[first][0] and state[last][0]
    assert await received(queue, 2) == [str(first), str(last)]

    late = await bound_queue(connection, lost)
    assert await relay.publish_pending() == 1
    assert await received(late, 1) == [str(returned)]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_two_relays_at_once_never_publish_a_row_twice(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection, exchange: Any
) -> None:
    key = f"it.lease.pair.{uuid.uuid4().hex[:6]}"
    queue = await bound_queue(connection, key)
    ids = await queue_rows(pool, key, 120)
    registry = CollectorRegistry()
    metrics = MessagingMetrics(registry)
    relays = [OutboxRelay(pool, exchange, metrics, batch_size=7) for _ in range(2)]

    async def drain(relay: OutboxRelay) -> int:
        total = 0
        while published := await relay.publish_pending():
            total += published
        return total

    counts = await asyncio.gather(*(drain(relay) for relay in relays))

    assert sum(counts) == len(ids)
    got = await received(queue, len(ids))
    assert sorted(got) == sorted(str(i) for i in ids)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


# The outbox as services created it before the lease (up to 3763323).
OUTBOX_BEFORE_THE_LEASE = """
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    routing_key text NOT NULL,
    payload jsonb NOT NULL,
    trace_context jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
"""


async def test_an_outbox_made_before_the_lease_gets_its_column_and_drains(
    make_database: Callable[[str], Awaitable[str]],
    connection: AbstractRobustConnection,
    exchange: Any,
) -> None:
    """A service starting on an existing database adds ``claimed_until``; applying the schema
    again (every start) takes no exclusive lock on the outbox, which would hold up its writers."""
    key = f"it.lease.old.{uuid.uuid4().hex[:6]}"
    queue = await bound_queue(connection, key)
    pool = await asyncpg.create_pool(
        await make_database("outbox_before_lease"), min_size=1, max_size=2
    )
    assert pool is not None
    try:
        await pool.execute(OUTBOX_BEFORE_THE_LEASE)
        (waiting,) = await queue_rows(pool, key, 1)  # committed before the upgrade
        await pool.execute(OUTBOX_SCHEMA)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(OUTBOX_SCHEMA)
            locks = await conn.fetch(
                "SELECT mode FROM pg_locks WHERE relation = 'outbox'::regclass AND granted"
            )
        assert "AccessExclusiveLock" not in {lock["mode"] for lock in locks}

        relay = OutboxRelay(pool, exchange, MessagingMetrics(CollectorRegistry()))
        assert await relay.publish_pending() == 1
        assert await received(queue, 1) == [str(waiting)]
    finally:
        await pool.close()


async def test_a_relay_stopped_mid_publish_releases_its_claim(
    amqp_url: str, pool: asyncpg.Pool[Any], connection: AbstractRobustConnection, exchange: Any
) -> None:
    """A service stopping (its relay cancelled while it waits for confirms) hands its rows
    back at once, as the rolled-back transaction did, instead of leaving them to the lease."""
    key = f"it.lease.stop.{uuid.uuid4().hex[:6]}"
    queue = await bound_queue(connection, key)
    proxy = PausableProxy()
    port = await proxy.start()
    proxied = await connect(amqp_url.replace(":5672/", f":{port}/"), "safiri-tests-paused")
    try:
        paused = await declare_events_exchange(await publisher_channel(proxied))
        relay = OutboxRelay(pool, paused, MessagingMetrics(CollectorRegistry()), confirm_timeout=60)
        (message_id,) = await queue_rows(pool, key, 1)
        proxy.flowing.clear()  # the broker takes the message; its confirm never comes back
        publishing = asyncio.create_task(relay.publish_pending())

        probe = await connection.channel()

        async def in_the_queue() -> bool:
            # robust=False: a robust channel caches a passive declaration, and its first count.
            declared = await probe.declare_queue(queue.name, passive=True, robust=False)
            return (declared.declaration_result.message_count or 0) == 1

        await eventually(in_the_queue, timeout=10, what="the message to reach the broker")
        publishing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await publishing
        row = await pool.fetchrow(
            "SELECT published_at, claimed_until FROM outbox WHERE message_id = $1", message_id
        )
        assert row is not None and (row["published_at"], row["claimed_until"]) == (None, None)

        # Another relay publishes it again now (at least once: the first copy got through).
        other = OutboxRelay(pool, exchange, MessagingMetrics(CollectorRegistry()))
        assert await other.publish_pending() == 1
        assert await received(queue, 2) == [str(message_id)] * 2
    finally:
        proxy.flowing.set()
        await proxied.close()
        await proxy.close()

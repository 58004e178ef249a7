"""Outbox relay and consumers on a real RabbitMQ vhost and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry

from safiri_contracts import DEAD_LETTER_REASON_HEADER, PaymentRequested
from safiri_messaging import (
    OUTBOX_SCHEMA,
    Envelope,
    MessagingMetrics,
    OutboxRelay,
    OutboxUnitOfWork,
    PoisonMessage,
    QueueSpec,
    add_to_outbox,
    consume,
    consumer_channel,
    declare_events_exchange,
    declare_queue,
    publisher_channel,
)
from safiri_telemetry import business_span
from tests.conftest import eventually

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module")
async def pool(make_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(await make_database("messaging_it"), min_size=2, max_size=6)
    assert pool is not None
    await pool.execute(OUTBOX_SCHEMA)
    try:
        yield pool
    finally:
        await pool.close()


async def depth(channel: AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def test_the_relay_publishes_each_outbox_row_once_under_its_trace(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection, spans: InMemorySpanExporter
) -> None:
    key = f"it.relay.{uuid.uuid4().hex[:6]}"
    channel = await consumer_channel(connection, 10)
    queue = await declare_queue(channel, QueueSpec(f"it-relay-{uuid.uuid4().hex[:6]}", (key,)))
    exchange = await declare_events_exchange(await publisher_channel(connection))
    metrics = MessagingMetrics(CollectorRegistry())
    with business_span("hold_seats") as step:
        async with pool.acquire() as conn, conn.transaction():
            message_id = await add_to_outbox(conn, key, {"order_id": "o-1"})

    relay = OutboxRelay(pool, exchange, metrics)
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0

    message = await eventually(lambda: queue.get(fail=False), what="the relayed message")
    await message.ack()
    assert message.message_id == str(message_id)
    assert json.loads(message.body) == {"order_id": "o-1"}
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    publish = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER)
    assert publish.context.trace_id == step.get_span_context().trace_id
    assert publish.parent is not None and publish.parent.span_id == step.get_span_context().span_id
    headers = message.headers or {}
    assert str(headers["traceparent"]).split("-")[2] == format(publish.context.span_id, "016x")


async def test_a_commit_wakes_the_relay_without_waiting_for_its_poll(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection
) -> None:
    key = f"it.notify.{uuid.uuid4().hex[:6]}"
    channel = await consumer_channel(connection, 10)
    queue = await declare_queue(channel, QueueSpec(f"it-notify-{uuid.uuid4().hex[:6]}", (key,)))
    exchange = await declare_events_exchange(await publisher_channel(connection))
    relay = OutboxRelay(pool, exchange, MessagingMetrics(CollectorRegistry()), poll_interval=600)
    drains: list[int] = []  # what each drain of the relay published, in order
    drain = relay.publish_pending

    async def counted() -> int:
        published = await drain()
        drains.append(published)
        return published

    relay.publish_pending = counted  # type: ignore[method-assign]
    running = asyncio.create_task(relay.run())
    try:

        async def parked() -> bool:
            # It drains at start, and once more when its LISTEN is up (the listen wakes the
            # loop, for what was committed meanwhile); both found nothing. Then it waits 600 s.
            return drains == [0, 0]

        await eventually(parked, timeout=5, what="the relay's start-up drains")
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, key, {"order_id": "o-2"})
        message = await eventually(
            lambda: queue.get(fail=False), timeout=5, what="the message, woken by NOTIFY"
        )
        await message.ack()

        # Published by a third drain, which only the NOTIFY of the commit could have started
        # within the 600 s poll. (The broker can deliver before that drain has returned its
        # count: wait for the count, not only the message.)
        async def third_drain_published_it() -> bool:
            return drains[:3] == [0, 0, 1]

        await eventually(third_drain_published_it, timeout=5, what="the third drain to count it")

        # The database drops the LISTEN connection (as a restart does): the relay listens anew.
        listening = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        listening += " AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        (old_pid,) = [r["pid"] for r in await pool.fetch(listening)]
        await pool.execute("SELECT pg_terminate_backend($1)", old_pid)

        async def listening_again() -> int | None:
            pids = [r["pid"] for r in await pool.fetch(listening)]
            return pids[0] if pids and pids[0] != old_pid else None

        await eventually(listening_again, timeout=5, what="the relay to LISTEN again")
        async with pool.acquire() as conn, conn.transaction():
            await add_to_outbox(conn, key, {"order_id": "o-3"})
        message = await eventually(
            lambda: queue.get(fail=False), timeout=5, what="the message after the reconnect"
        )
        await message.ack()
        assert json.loads(message.body) == {"order_id": "o-3"}
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_an_unroutable_event_stays_in_the_outbox(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection
) -> None:
    exchange = await declare_events_exchange(await publisher_channel(connection))
    async with pool.acquire() as conn, conn.transaction():
        await pool.execute("UPDATE outbox SET published_at = now()")
        message_id = await add_to_outbox(conn, "nobody.listens", {})
    relay = OutboxRelay(pool, exchange, MessagingMetrics(CollectorRegistry()))
    with pytest.raises(aio_pika.exceptions.PublishError):
        await relay.publish_pending()
    assert (
        await pool.fetchval("SELECT published_at FROM outbox WHERE message_id = $1", message_id)
        is None
    )
    await pool.execute("DELETE FROM outbox WHERE message_id = $1", message_id)


async def test_poison_is_dead_lettered_and_the_next_message_is_processed(
    connection: AbstractRobustConnection, spans: InMemorySpanExporter
) -> None:
    spec = QueueSpec(f"it-poison-{uuid.uuid4().hex[:6]}", ("it.poison",))
    channel = await consumer_channel(connection, 5)
    queue = await declare_queue(channel, spec)
    seen: list[str] = []

    async def handler(envelope: Envelope) -> None:
        seen.append(envelope.field("value"))

    registry = CollectorRegistry()
    await consume(queue, handler, MessagingMetrics(registry))
    exchange = await declare_events_exchange(channel)
    for body, mid in [(b"{oops", "m1"), (b'{"value": 7}', "m2"), (b'{"value": "ok"}', "m3")]:
        await exchange.publish(aio_pika.Message(body, message_id=mid), routing_key="it.poison")

    await eventually(lambda: _done(seen, ["ok"]), what="the valid message to be processed")
    parked = await _dead_lettered(connection, spec.dead_letter_queue, 2)
    assert sorted(m.message_id or "" for m in parked) == ["m1", "m2"]
    reasons = {m.message_id: (m.headers or {}).get(DEAD_LETTER_REASON_HEADER) for m in parked}
    assert str(reasons["m1"]).startswith("body is not JSON"), reasons
    assert reasons["m2"] == "field 'value' is missing or not <class 'str'>", reasons
    assert {(m.headers or {}).get("x-safiri-dead-lettered-from") for m in parked} == {spec.name}
    outcome = {"messaging_destination_name": spec.name, "outcome": "dead_lettered"}
    assert registry.get_sample_value("messaging_client_consumed_messages_total", outcome) == 2
    consumer_spans = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert {s.name for s in consumer_spans} == {f"process {spec.name}"}


async def test_a_contract_queue_dead_letters_unknown_versions_and_invalid_bodies_with_reasons(
    connection: AbstractRobustConnection,
) -> None:
    """The typed path the services use: ``envelope.decode(spec)`` by the queue's contract."""
    spec = QueueSpec(f"it-typed-{uuid.uuid4().hex[:6]}", messages=(PaymentRequested,))
    channel = await consumer_channel(connection, 5)
    queue = await declare_queue(channel, spec)
    seen: list[PaymentRequested] = []

    async def handler(envelope: Envelope) -> None:
        message = envelope.decode(spec)
        assert isinstance(message, PaymentRequested)
        seen.append(message)

    await consume(queue, handler, MessagingMetrics(CollectorRegistry()))
    exchange = await declare_events_exchange(channel)
    valid = PaymentRequested(
        order_id=str(uuid.uuid4()),
        trip_id="t-1",
        amount=1500,
        currency="KES",
        phone="254712345678",
        description="Nairobi-Mombasa x1",
    )
    ids = {name: str(uuid.uuid4()) for name in ("v2", "bad", "ok")}
    ids["no-uuid"] = "m-7"
    bodies = {
        "v2": json.dumps({**valid.to_payload(), "schema_version": 2}).encode(),
        "bad": json.dumps({**valid.to_payload(), "amount": "1500"}).encode(),
        "no-uuid": valid.to_json(),  # valid, but the inbox could never record this id
        "ok": valid.to_json(),
    }
    for name, body in bodies.items():
        await exchange.publish(
            aio_pika.Message(body, message_id=ids[name]), routing_key=PaymentRequested.routing_key
        )
    await eventually(lambda: _done(seen, [valid]), what="the valid message to be processed")
    parked = await _dead_lettered(connection, spec.dead_letter_queue, 3)
    reasons = {m.message_id: (m.headers or {}).get(DEAD_LETTER_REASON_HEADER) for m in parked}
    assert reasons == {
        ids[
            "v2"
        ]: "payment.requested schema_version 2 is not known (this consumer reads version 1)",
        ids["bad"]: "invalid payment.requested v1: amount: Input should be a valid integer",
        "m-7": "message_id 'm-7' is not a UUID (the inbox keys on it)",
    }
    assert [m.body for m in parked if m.message_id == ids["bad"]] == [bodies["bad"]]


async def test_a_message_that_keeps_failing_is_dead_lettered_after_the_delivery_limit(
    connection: AbstractRobustConnection, spans: InMemorySpanExporter
) -> None:
    spec = QueueSpec(f"it-limit-{uuid.uuid4().hex[:6]}", ("it.limit",), delivery_limit=2)
    channel = await consumer_channel(connection, 5)
    queue = await declare_queue(channel, spec)
    attempts: list[bool] = []

    async def handler(envelope: Envelope) -> None:
        attempts.append(envelope.redelivered)
        raise RuntimeError("database down")

    registry = CollectorRegistry()
    await consume(queue, handler, MessagingMetrics(registry))
    exchange = await declare_events_exchange(channel)
    await exchange.publish(aio_pika.Message(b"{}", message_id="m1"), routing_key="it.limit")

    (parked,) = await _dead_lettered(connection, spec.dead_letter_queue, 1)
    assert parked.message_id == "m1"
    assert parked.headers["x-death"][0]["reason"] == "delivery_limit"  # type: ignore[index]
    assert attempts[0] is False
    assert 2 <= len(attempts) <= 3
    assert await depth(await connection.channel(), spec.name) == 0
    # Each failed attempt's consumer span is an error with the exception recorded.
    failed = [s for s in spans.get_finished_spans() if s.name == f"process {spec.name}"]
    assert len(failed) == len(attempts)
    assert {s.status.status_code for s in failed} == {StatusCode.ERROR}
    assert all(e.name == "exception" for s in failed for e in s.events)


async def test_field_refuses_missing_or_mistyped_values() -> None:
    envelope = Envelope("m", "k", b'{"n": 1, "flag": true}', False)
    assert envelope.field("n", int) == 1
    with pytest.raises(PoisonMessage):
        envelope.field("flag", int)
    with pytest.raises(PoisonMessage):
        envelope.field("missing")


async def _done(seen: list[Any], expected: list[Any]) -> bool:
    return seen == expected


async def _dead_lettered(
    connection: AbstractRobustConnection, queue: str, n: int
) -> list[AbstractIncomingMessage]:
    """Take ``n`` messages off a dead-letter queue, waiting for them with a deadline."""
    channel = await connection.channel()
    dlq = await channel.declare_queue(queue, passive=True)
    taken: list[AbstractIncomingMessage] = []

    async def take() -> list[AbstractIncomingMessage] | None:
        message = await dlq.get(fail=False)
        if message is not None:
            await message.ack()
            taken.append(message)
        return taken if len(taken) >= n else None

    return await eventually(take, what=f"{n} message(s) in {queue}")


async def test_messaging_spans_follow_the_messaging_conventions(
    pool: asyncpg.Pool[Any], connection: AbstractRobustConnection, spans: InMemorySpanExporter
) -> None:
    key = f"it.conv.{uuid.uuid4().hex[:6]}"
    spec = QueueSpec(f"it-conv-{uuid.uuid4().hex[:6]}", (key,))
    channel = await consumer_channel(connection, 5)
    queue = await declare_queue(channel, spec)
    handled: list[str] = []

    async def handler(envelope: Envelope) -> None:
        handled.append(envelope.message_id)

    await consume(queue, handler, MessagingMetrics(CollectorRegistry()))
    exchange = await declare_events_exchange(await publisher_channel(connection))
    async with pool.acquire() as conn, conn.transaction():
        message_id = str(await add_to_outbox(conn, key, {"order_id": "o-9"}))
    await OutboxRelay(pool, exchange, MessagingMetrics(CollectorRegistry())).publish_pending()
    await eventually(lambda: _done(handled, [message_id]), what="the message to be processed")

    finished = spans.get_finished_spans()
    publish = next(s for s in finished if s.kind is SpanKind.PRODUCER)
    process = next(s for s in finished if s.kind is SpanKind.CONSUMER)
    assert publish.name == "publish safiri.events"
    assert dict(publish.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "safiri.events",
        "messaging.rabbitmq.destination.routing_key": key,
        "messaging.message.id": message_id,
    }
    assert process.name == f"process {spec.name}"
    attrs = dict(process.attributes or {})
    assert attrs["messaging.operation.type"] == "process"
    assert attrs["messaging.destination.name"] == "safiri.events"  # the exchange it came by
    assert attrs["messaging.destination.subscription.name"] == spec.name
    assert attrs["messaging.message.id"] == message_id
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id
    assert [link.context.span_id for link in process.links] == [publish.context.span_id]


@pytest.mark.parametrize("where", ["query", "commit"])
async def test_a_unit_of_work_cancelled_mid_query_lets_the_cancellation_out(
    pool: asyncpg.Pool[Any], where: str
) -> None:
    """A task cancelled while its unit of work waits on PostgreSQL (a service stopping while its
    reconciler runs) must end cancelled. Cancelled during COMMIT, asyncpg marks the transaction
    failed and the unit of work's rollback raised InterfaceError in place of the CancelledError;
    the job runner logged that and went on, so the task never ended and payment hung on
    SIGTERM (seen in a make test run)."""
    table = f"slow_commit_{uuid.uuid4().hex[:8]}"
    # A deferred constraint trigger runs at COMMIT: it makes the commit itself take 30 s.
    await pool.execute(
        f"""
        CREATE TABLE {table} (id int);
        CREATE FUNCTION {table}_sleep() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER {table}_at_commit AFTER INSERT ON {table}
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {table}_sleep();
        """
    )
    started = asyncio.Event()

    async def step() -> None:
        async with OutboxUnitOfWork(pool) as uow:
            if where == "query":
                started.set()
                await uow.conn.execute("SELECT pg_sleep(30)")
            await uow.conn.execute(f"INSERT INTO {table} VALUES (1)")
            started.set()
            await uow.commit()

    task = asyncio.create_task(step())
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.3)  # into the query or the commit: the server is sleeping
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    # The connection went back to the pool usable, and nothing was committed.
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0
    await pool.execute(f"DROP TABLE {table}; DROP FUNCTION {table}_sleep()")

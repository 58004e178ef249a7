"""The RabbitMQ topology Safiri's services declare at start-up.

One durable topic exchange carries every domain event; each consumer queue is a quorum queue
with a delivery limit and its own dead-letter queue, so a message that keeps failing is parked
where an operator can see it instead of looping forever.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from safiri_contracts import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, QueueSpec

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "EVENTS_EXCHANGE",
    "QueueSpec",
    "declare_events_exchange",
    "declare_queue",
]


async def declare_events_exchange(channel: AbstractChannel) -> AbstractExchange:
    return await channel.declare_exchange(
        EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
    )


async def declare_queue(channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
    """Declare ``spec``'s queue, its bindings and its dead-letter queue (idempotent)."""
    events = await declare_events_exchange(channel)
    dlx = await channel.declare_exchange(
        DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dlq = await channel.declare_queue(
        spec.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dlq.bind(dlx, routing_key=spec.name)
    queue = await channel.declare_queue(
        spec.name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": spec.name,
            "x-delivery-limit": spec.delivery_limit,
        },
    )
    for key in spec.routing_keys:
        await queue.bind(events, routing_key=key)
    return queue

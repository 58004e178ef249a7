"""Messaging spans after the current OpenTelemetry messaging conventions, for RabbitMQ.

As the RabbitMQ conventions say, ``messaging.destination.name`` is the exchange (an empty
string for the default exchange) and ``messaging.rabbitmq.destination.routing_key`` the routing
key; a consumer's queue is its ``messaging.destination.subscription.name``. Span names are
``publish <exchange>`` (``publish`` alone for the default exchange, which has no name) and
``process <queue>`` (the entity a consumer's operation is performed against).

``publish_span`` and ``consume_span`` work with any client; ``publish_message``,
``traced_consumer`` and ``consume_messages`` do the whole job with aio-pika, which they import
only when called: the library itself imports without it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from loguru import logger
from opentelemetry import context as otel_context
from opentelemetry.trace import Link, Span, SpanKind, get_current_span

from ._tracing import business_span, context_from_carrier, inject_carrier

if TYPE_CHECKING:
    from aio_pika import Message
    from aio_pika.abc import AbstractExchange, AbstractIncomingMessage, AbstractQueue

    MessageHandler = Callable[[AbstractIncomingMessage], Awaitable[object]]

__all__ = [
    "DEFAULT_EXCHANGE",
    "consume_messages",
    "consume_span",
    "publish_message",
    "publish_span",
    "traced_consumer",
]

DEFAULT_EXCHANGE = ""
"""The default exchange's name: empty, in AMQP and in ``messaging.destination.name``."""


@contextmanager
def publish_span(
    exchange: str,
    routing_key: str,
    message_id: str,
    headers: dict[str, Any],
    *,
    parent: otel_context.Context | None = None,
) -> Iterator[Span]:
    """A PRODUCER span ``publish <exchange>`` (``publish`` for the default exchange, ``""``);
    its context is written into ``headers``."""
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": message_id,
    }
    name = f"publish {exchange}" if exchange else "publish"
    with business_span(name, attributes, kind=SpanKind.PRODUCER, parent=parent) as span:
        inject_carrier(headers)
        yield span


@contextmanager
def consume_span(
    queue: str,
    routing_key: str,
    message_id: str | None,
    headers: Mapping[str, Any] | None,
    *,
    redelivered: bool = False,
    exchange: str = DEFAULT_EXCHANGE,
) -> Iterator[Span]:
    """A CONSUMER span ``process <queue>``, a child of the producer's span in ``headers``;
    ``exchange`` is the one the message was published to (``message.exchange``)."""
    parent = context_from_carrier(headers)
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": exchange,
        "messaging.destination.subscription.name": queue,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": message_id,
        "safiri.message.redelivered": redelivered,
    }
    producer = get_current_span(parent).get_span_context()
    links = [Link(producer)] if producer.is_valid else None
    with business_span(
        f"process {queue}", attributes, kind=SpanKind.CONSUMER, parent=parent, links=links
    ) as span:
        yield span


async def publish_message(
    exchange: AbstractExchange,
    routing_key: str,
    body: bytes,
    *,
    message_id: str | None = None,
    headers: Mapping[str, Any] | None = None,
    parent: otel_context.Context | None = None,
    **properties: Any,
) -> Message:
    """Publish a persistent message inside a ``publish_span``; returns the message sent.

    The span's context is written into the message headers (next to ``headers``), so the
    consumer continues the trace. ``message_id`` defaults to a new UUID; ``properties`` are
    the other ``aio_pika.Message`` fields (``content_type``, ``correlation_id``, ...).
    ``parent`` resumes a stored context (an outbox row) instead of the active one.
    """
    from aio_pika import DeliveryMode, Message

    message_id = message_id or uuid.uuid4().hex
    carrier = dict(headers or {})
    with publish_span(exchange.name, routing_key, message_id, carrier, parent=parent):
        properties.setdefault("delivery_mode", DeliveryMode.PERSISTENT)
        message = Message(body, headers=carrier, message_id=message_id, **properties)
        await exchange.publish(message, routing_key=routing_key)
    return message


def traced_consumer(
    queue: str, handler: MessageHandler, *, requeue: bool = False
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """``handler`` as an aio-pika consumer callback that runs it inside a ``consume_span``.

    The message is acknowledged when ``handler`` returns. When it raises, the span is marked
    as an error, the failure is logged (with the trace) and the message is rejected:
    dead-lettered or dropped, or requeued with ``requeue=True``. A handler may also settle the
    message itself (``await message.reject(requeue=True)``); it is then left alone.
    """

    async def consume(message: AbstractIncomingMessage) -> None:
        failure: Exception | None = None
        try:
            async with message.process(requeue=requeue, ignore_processed=True):
                with consume_span(
                    queue,
                    message.routing_key or "",
                    message.message_id,
                    message.headers,
                    redelivered=bool(message.redelivered),
                    exchange=message.exchange or DEFAULT_EXCHANGE,
                ):
                    try:
                        await handler(message)
                    except Exception as exc:
                        failure = exc
                        logger.opt(exception=exc).bind(
                            queue=queue, message_id=message.message_id, requeue=requeue
                        ).error("message handling failed")
                        raise
        except Exception as exc:
            if exc is not failure:
                raise  # settling the message failed: the broker will redeliver it

    return consume


async def consume_messages(
    queue: AbstractQueue, handler: MessageHandler, *, requeue: bool = False, **options: Any
) -> str:
    """Consume ``queue`` with ``traced_consumer(queue.name, handler)``; returns the consumer tag.

    ``options`` go to ``queue.consume`` (``consumer_tag``, ``exclusive``, ...).
    """
    return await queue.consume(traced_consumer(queue.name, handler, requeue=requeue), **options)

"""Messaging spans after the current OpenTelemetry messaging conventions, for RabbitMQ.

As the RabbitMQ conventions say, ``messaging.destination.name`` is the exchange (an empty
string for the default exchange) and ``messaging.rabbitmq.destination.routing_key`` the routing
key; a consumer's queue is its ``messaging.destination.subscription.name``. Span names are
``publish <exchange>`` (``publish`` alone for the default exchange, which has no name) and
``process <queue>`` (the entity a consumer's operation is performed against).

These are the building blocks, for any client: the library imports no AMQP client. Safiri's
services publish through ``safiri_messaging``'s outbox relay and consume through its
``consume`` (dead letters, bounded retries, a graceful drain), both built on these two; a
service of its own wraps its aio-pika publish and its consumer callback in them (the README's
example service).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Link, Span, SpanKind, get_current_span

from ._tracing import business_span, context_from_carrier, inject_carrier

__all__ = ["DEFAULT_EXCHANGE", "consume_span", "publish_span"]

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
    its context is written into ``headers``, which are then the message's headers.

    Publish inside it, so a failed publish marks the span as an error. ``parent`` resumes a
    stored context (an outbox row's) instead of the active one.
    """
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
    """A CONSUMER span ``process <queue>``, a child of the producer's span in ``headers``
    (and linked to it); ``exchange`` is the one the message was published to
    (``message.exchange``).

    Handle the message inside it: an exception marks the span as an error, is recorded on it
    and propagates, so settle the message around it (``async with
    message.process(requeue=False)``: rejected, hence dead-lettered, when the handler raises).
    """
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

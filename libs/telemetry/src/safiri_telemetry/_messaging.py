"""Messaging spans after the current OpenTelemetry messaging conventions, for RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Link, Span, SpanKind, get_current_span

from ._tracing import business_span, context_from_carrier, inject_carrier

__all__ = ["consume_span", "publish_span"]


@contextmanager
def publish_span(
    exchange: str,
    routing_key: str,
    message_id: str,
    headers: dict[str, Any],
    *,
    parent: otel_context.Context | None = None,
) -> Iterator[Span]:
    """A PRODUCER span ``publish <exchange>``; its context is written into ``headers``."""
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": message_id,
    }
    with business_span(
        f"publish {exchange}", attributes, kind=SpanKind.PRODUCER, parent=parent
    ) as span:
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
) -> Iterator[Span]:
    """A CONSUMER span ``process <queue>``, a child of the producer's span in ``headers``."""
    parent = context_from_carrier(headers)
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue,
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

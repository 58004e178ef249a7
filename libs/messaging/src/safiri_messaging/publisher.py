"""Publishing a contract message without an outbox: for a producer that has no database.

The services publish through their transactional outbox (``OutboxUnitOfWork.emit``): the event
is committed with the state change it reports. A producer with no state to commit with (the
fleet simulator: a GPS fix is a fact about a moment, and the next fix replaces a lost one)
publishes the contract model straight to the events exchange with ``publish_event``, under the
same ``publish`` PRODUCER span and trace headers as the outbox's relay, with a UUID message id,
publisher confirms and ``mandatory``. Nothing else builds an AMQP message from a body (a unit
test scans the code for it).
"""

from __future__ import annotations

import uuid
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange
from prometheus_client import Counter

from safiri_contracts import Message as ContractMessage
from safiri_telemetry import publish_span

from .topology import EVENTS_EXCHANGE

__all__ = ["publish_event"]


async def publish_event(
    exchange: AbstractExchange,
    message: ContractMessage,
    sent: Counter | None = None,
    *,
    timeout: float = 5.0,
) -> str:
    """Publish ``message`` to ``exchange`` (the events exchange, on a channel with publisher
    confirms) under its routing key, confirmed within ``timeout`` s, counted in ``sent``
    (``sent_messages_counter``); returns its message id.

    Raises what the broker raised: unroutable (no queue bound: ``mandatory``), not confirmed,
    or the connection lost; the caller decides whether the next message makes up for it.
    """
    message_id = str(uuid.uuid4())
    routing_key = message.routing_key
    headers: dict[str, Any] = {}
    with publish_span(EVENTS_EXCHANGE, routing_key, message_id, headers):
        amqp_message = aio_pika.Message(
            body=message.to_json(),
            message_id=message_id,
            type=routing_key,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )
        await exchange.publish(
            amqp_message, routing_key=routing_key, mandatory=True, timeout=timeout
        )
    if sent is not None:
        sent.labels(EVENTS_EXCHANGE, routing_key).inc()
    return message_id

"""Safiri's contracts as code: the typed messages on the bus, their routing keys and queues.

Producers build a message model and emit it; consumers decode with their queue's spec::

    uow.emit(PaymentRequested(order_id=..., trip_id=..., amount=1500, currency="KES", ...))
    message = PAYMENT_RESULTS.decode(routing_key, body)  # PaymentSucceeded | PaymentFailed

A producer without a database (the fleet simulator) publishes the model straight to the
exchange with ``safiri_messaging.publish_event(exchange, BusPositionReported(...))``.

``python -m safiri_contracts.asyncapi`` writes the AsyncAPI 3.0 document made from them
(committed as docs/asyncapi.yaml).
"""

from __future__ import annotations

from .messages import (
    MESSAGES,
    BusPositionReported,
    InvalidMessage,
    Message,
    PaymentFailed,
    PaymentRequested,
    PaymentResult,
    PaymentSucceeded,
)
from .topology import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_REASON_HEADER,
    EVENTS_EXCHANGE,
    FLEET_POSITIONS,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    QUEUES,
    QueueSpec,
)

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_REASON_HEADER",
    "EVENTS_EXCHANGE",
    "FLEET_POSITIONS",
    "MESSAGES",
    "PAYMENT_REQUESTS",
    "PAYMENT_RESULTS",
    "QUEUES",
    "BusPositionReported",
    "InvalidMessage",
    "Message",
    "PaymentFailed",
    "PaymentRequested",
    "PaymentResult",
    "PaymentSucceeded",
    "QueueSpec",
]

"""Where messages travel: the exchanges, and each consumer's queue with its bindings.

A ``QueueSpec`` names a consumer's queue, the messages bound to it and its delivery limit; it
decodes what arrives on it. The broker objects themselves are declared by safiri_messaging.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import (
    BusPositionReported,
    InvalidMessage,
    Message,
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
)

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "DEAD_LETTER_REASON_HEADER",
    "EVENTS_EXCHANGE",
    "FLEET_POSITIONS",
    "PAYMENT_REQUESTS",
    "PAYMENT_RESULTS",
    "QUEUES",
    "QueueSpec",
]

EVENTS_EXCHANGE = "safiri.events"
"""The durable topic exchange every domain event is published to (routing key = message's)."""
DEAD_LETTER_EXCHANGE = "safiri.dead-letter"
"""The direct exchange each queue dead-letters to, with the queue's name as routing key."""

DEAD_LETTER_REASON_HEADER = "x-safiri-dead-letter-reason"
"""Set on a message a consumer dead-lettered because it can never be processed: why."""


@dataclass(frozen=True)
class QueueSpec:
    """A consumer's quorum queue, bound to ``routing_keys`` on the events exchange.

    ``messages`` are the typed messages it accepts (their routing keys are its bindings); a
    queue made with bare ``routing_keys`` carries untyped bodies (tests, other tools).
    """

    name: str
    routing_keys: tuple[str, ...] = ()
    delivery_limit: int = 5
    messages: tuple[type[Message], ...] = field(default=(), compare=False)
    consumer: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.messages and not self.routing_keys:
            keys = tuple(m.routing_key for m in self.messages)
            object.__setattr__(self, "routing_keys", keys)

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.name}.dlq"

    def decode(self, routing_key: str, body: bytes | str) -> Message:
        """The typed message in ``body``, or ``InvalidMessage`` with the reason."""
        for message in self.messages:
            if message.routing_key == routing_key:
                return message.from_body(body)
        raise InvalidMessage(f"{self.name} does not accept routing key {routing_key!r}")


PAYMENT_REQUESTS = QueueSpec(
    "payment.requests",
    messages=(PaymentRequested,),
    consumer="payment",
    description="Payment's queue of payment requests.",
)
PAYMENT_RESULTS = QueueSpec(
    "ticketing.payment-results",
    messages=(PaymentSucceeded, PaymentFailed),
    consumer="ticketing",
    description="Ticketing's queue of payment outcomes: confirm the order or release its seats.",
)
FLEET_POSITIONS = QueueSpec(
    "ticketing.fleet-positions",
    messages=(BusPositionReported,),
    consumer="ticketing",
    description="Ticketing's queue of GPS fixes: the latest position of each bus, for the"
    " Control Tower's map and active_buses_count.",
)
QUEUES: tuple[QueueSpec, ...] = (PAYMENT_REQUESTS, PAYMENT_RESULTS, FLEET_POSITIONS)

"""Ticketing's consumer of payment results: message → use case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from safiri_messaging import PAYMENT_FAILED, PAYMENT_SUCCEEDED, Envelope, PoisonMessage, QueueSpec

from ..service_layer.handlers import Ticketing, payment_result_from

__all__ = ["PAYMENT_RESULTS", "payment_results_handler"]

Handler = Callable[[Envelope], Awaitable[None]]

PAYMENT_RESULTS = QueueSpec("ticketing.payment-results", (PAYMENT_SUCCEEDED, PAYMENT_FAILED))


def payment_results_handler(ticketing: Ticketing) -> Handler:
    async def handle(envelope: Envelope) -> None:
        if envelope.routing_key not in (PAYMENT_SUCCEEDED, PAYMENT_FAILED):
            raise PoisonMessage(f"unexpected routing key {envelope.routing_key!r}")
        result = payment_result_from(
            envelope.message_id, envelope.payload, envelope.routing_key == PAYMENT_SUCCEEDED
        )
        await ticketing.record_payment_result(result)

    return handle

"""Ticketing's consumer of payment results: message → use case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from safiri_contracts import PAYMENT_RESULTS, InvalidMessage
from safiri_contracts import PaymentResult as PaymentResultMessage
from safiri_messaging import Envelope

from ..service_layer.handlers import PaymentResult, Ticketing

__all__ = ["PAYMENT_RESULTS", "payment_results_handler"]

Handler = Callable[[Envelope], Awaitable[None]]


def payment_results_handler(ticketing: Ticketing) -> Handler:
    async def handle(envelope: Envelope) -> None:
        message = envelope.decode(PAYMENT_RESULTS)  # PaymentSucceeded | PaymentFailed
        if not isinstance(message, PaymentResultMessage):  # pragma: no cover - by the contract
            raise InvalidMessage(f"{type(message).__name__} is not a payment result")
        await ticketing.record_payment_result(
            PaymentResult.from_message(envelope.message_id, message)
        )

    return handle

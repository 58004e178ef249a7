"""Payment's consumer of payment requests: message → use case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from safiri_contracts import PAYMENT_REQUESTS, InvalidMessage, PaymentRequested
from safiri_messaging import Envelope

from ..service_layer.handlers import PaymentRequest, Payments

__all__ = ["PAYMENT_REQUESTS", "payment_requests_handler"]


def payment_requests_handler(payments: Payments) -> Callable[[Envelope], Awaitable[None]]:
    async def handle(envelope: Envelope) -> None:
        message = envelope.decode(PAYMENT_REQUESTS)
        if not isinstance(message, PaymentRequested):  # pragma: no cover - by the contract
            raise InvalidMessage(f"{type(message).__name__} is not a payment request")
        await payments.request_payment(PaymentRequest.from_message(envelope.message_id, message))

    return handle

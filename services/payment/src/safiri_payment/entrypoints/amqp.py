"""Payment's consumer of payment requests: message → use case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from safiri_messaging import PAYMENT_REQUESTED, Envelope, QueueSpec

from ..service_layer.handlers import PaymentRequest, Payments

__all__ = ["PAYMENT_REQUESTS", "payment_requests_handler"]

PAYMENT_REQUESTS = QueueSpec("payment.requests", (PAYMENT_REQUESTED,))


def payment_requests_handler(payments: Payments) -> Callable[[Envelope], Awaitable[None]]:
    async def handle(envelope: Envelope) -> None:
        await payments.request_payment(
            PaymentRequest.from_payload(envelope.message_id, envelope.payload)
        )

    return handle

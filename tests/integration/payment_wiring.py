"""Payment's use cases on the real PostgreSQL adapters, for a provider of the test's own.

A payment's callback URL here is ``http://cb/<payment_id>?token=<token>``; a fake provider
reads the payment and its token back from the push with ``callback_parts``.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from safiri_payment.adapters.postgres import PostgresPaymentStore, PostgresUnitOfWork
from safiri_payment.metrics import PaymentMetrics
from safiri_payment.service_layer.handlers import Payments
from safiri_payment.service_layer.provider import PaymentProvider

CALLBACK = "http://cb/"


def callback_url(payment_id: str, token: str) -> str:
    return f"{CALLBACK}{payment_id}?token={token}"


def callback_parts(url: str) -> tuple[str, str]:
    """The payment id and token of a ``callback_url``."""
    payment_id, token = url.removeprefix(CALLBACK).split("?token=")
    return payment_id, token


def payments_on(
    pool: asyncpg.Pool[Any], provider: PaymentProvider, registry: CollectorRegistry | None = None
) -> Payments:
    """Payments on ``pool`` (its units of work and its one-statement store) calling
    ``provider``, their metrics in ``registry`` (a new one if None)."""
    return Payments(
        lambda: PostgresUnitOfWork(pool),
        provider,
        PaymentMetrics(registry if registry is not None else CollectorRegistry()),
        callback_url,
        store=PostgresPaymentStore(pool),
    )

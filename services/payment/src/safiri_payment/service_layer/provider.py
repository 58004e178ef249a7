"""What the payment service needs from a mobile-money provider, and how that can fail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ..domain.payments import ProviderOutcome

__all__ = [
    "Charge",
    "PaymentProvider",
    "ProviderCircuitOpen",
    "ProviderError",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "ProviderUnreachable",
    "StkPush",
]


class ProviderError(Exception):
    """The provider did not accept the request."""


class ProviderRejected(ProviderError):
    """The provider answered and said no; the customer was not charged."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ProviderUnavailable(ProviderError):
    """The request never reached the provider (refused, 5xx before acceptance)."""


class ProviderUnreachable(ProviderUnavailable):
    """The request was certainly never sent (no connection, no access token): safe to retry."""


class ProviderCircuitOpen(ProviderUnreachable):
    """Not sent: the circuit breaker is open after repeated provider failures."""


class ProviderTimeout(ProviderError):
    """No answer in time: the provider may or may not have taken the request."""


@dataclass(frozen=True)
class StkPush:
    amount: int
    phone: str
    account_reference: str
    description: str
    callback_url: str


@dataclass(frozen=True)
class Charge:
    """Money the provider took for the merchant, as its transaction list shows it."""

    receipt: str
    account_reference: str
    amount: int


class PaymentProvider(Protocol):
    name: str

    async def stk_push(self, request: StkPush) -> str:
        """Ask the customer to pay; returns the provider's CheckoutRequestID."""
        ...

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        """The push's outcome as the provider knows it now; ``None`` while still pending."""
        ...

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        """Every payment the provider completed for the merchant between the two instants."""
        ...

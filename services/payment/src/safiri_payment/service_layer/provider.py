"""What the payment service needs from a mobile-money provider, and how that can fail."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "PaymentProvider",
    "ProviderError",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
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


class ProviderTimeout(ProviderError):
    """No answer in time: the provider may or may not have taken the request."""


@dataclass(frozen=True)
class StkPush:
    amount: int
    phone: str
    account_reference: str
    description: str
    callback_url: str


class PaymentProvider(Protocol):
    name: str

    async def stk_push(self, request: StkPush) -> str:
        """Ask the customer to pay; returns the provider's CheckoutRequestID."""
        ...

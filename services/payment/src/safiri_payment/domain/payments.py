"""A payment for one order and its state machine. Pure: no I/O, no frameworks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["CallbackRejected", "InvalidTransition", "Payment", "PaymentStatus", "ProviderOutcome"]


class PaymentStatus(StrEnum):
    INITIATED = "INITIATED"  # recorded, STK push not yet accepted by the provider
    AWAITING_CALLBACK = "AWAITING_CALLBACK"  # the customer is being asked for their PIN
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"  # the provider may or may not have taken the request

    @property
    def is_final(self) -> bool:
        return self in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED)


class InvalidTransition(Exception):
    pass


class CallbackRejected(Exception):
    """A callback that does not belong to this payment; it changes nothing."""


@dataclass(frozen=True)
class ProviderOutcome:
    result_code: int
    result_desc: str
    receipt: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.result_code == 0


@dataclass
class Payment:
    payment_id: str
    order_id: str
    amount: int
    currency: str
    phone: str
    status: PaymentStatus = PaymentStatus.INITIATED
    checkout_request_id: str | None = None
    result_code: int | None = None
    result_desc: str | None = None
    receipt: str | None = None
    # The route that took the push (``mpesa``, ``backup``): its callbacks, STK queries and
    # reconciliation go to that provider for the payment's whole life, whatever the flag says.
    provider: str = "mpesa"

    def accepted(self, checkout_request_id: str) -> None:
        """The provider took the push. Its verdict may have come first (a callback, or the
        reconciler finding the charge): then only the CheckoutRequestID is recorded."""
        if self.status is PaymentStatus.INITIATED:
            self.status = PaymentStatus.AWAITING_CALLBACK
        elif not self.status.is_final:
            raise InvalidTransition(f"payment {self.payment_id} is {self.status}")
        self.checkout_request_id = checkout_request_id

    def settle(self, outcome: ProviderOutcome) -> None:
        """The provider's verdict. A payment is settled once: its verdict is final."""
        if self.status.is_final:
            raise InvalidTransition(f"payment {self.payment_id} already {self.status}")
        self.status = PaymentStatus.SUCCEEDED if outcome.succeeded else PaymentStatus.FAILED
        self.result_code = outcome.result_code
        self.result_desc = outcome.result_desc
        self.receipt = outcome.receipt

    def push_failed(self, outcome: ProviderOutcome) -> bool:
        """The provider refused the push, or was not reached: the payment fails. Its verdict
        may have come first (a callback, or the reconciler finding the charge) while the push
        call was still running: that verdict is final and stands, nothing changes (``False``)."""
        if self.status.is_final:
            return False
        self.settle(outcome)
        return True

    def outcome_unknown(self, reason: str) -> None:
        """It is unknown whether the provider took the push (its call timed out). A verdict
        that came first is final and stands: nothing changes."""
        if self.status.is_final:
            return
        self.status = PaymentStatus.UNKNOWN
        self.result_desc = reason

    def check_callback(self, checkout_request_id: str) -> None:
        if self.checkout_request_id is not None and checkout_request_id != self.checkout_request_id:
            raise CallbackRejected(
                f"callback for {checkout_request_id}, payment expects {self.checkout_request_id}"
            )

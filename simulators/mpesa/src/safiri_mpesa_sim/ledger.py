"""The provider's own record of every push: ground truth for "was money taken, and once?"."""

from __future__ import annotations

import itertools
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from .outcomes import Outcome
from .stk_push import StkPush

__all__ = ["CallbackDelivery", "Ledger", "Transaction", "TransactionState", "UnknownCheckout"]

_RECEIPT_ALPHABET = string.ascii_uppercase + string.digits


class TransactionState(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"


class CallbackDelivery(StrEnum):
    NOT_SENT = "not_sent"
    DELIVERED = "delivered"
    FAILED = "failed"


class UnknownCheckout(KeyError):
    """No push was ever accepted with this CheckoutRequestID."""


@dataclass
class Transaction:
    checkout_request_id: str
    merchant_request_id: str
    push: StkPush
    planned: Outcome | None
    created_at: datetime
    state: TransactionState = TransactionState.PENDING
    result: Outcome | None = None
    receipt: str | None = None
    completed_at: datetime | None = None
    callback: CallbackDelivery = CallbackDelivery.NOT_SENT

    @property
    def charged(self) -> bool:
        return self.result is not None and self.result.succeeded


class Ledger:
    """Every accepted push, in the order it arrived; kept in memory for the process's life."""

    def __init__(self) -> None:
        self._transactions: dict[str, Transaction] = {}
        # A per-process sequence makes ids unique; the random tail keeps them unguessable
        # and distinct across restarts of the simulator.
        self._sequence = itertools.count(1)

    def open(self, push: StkPush, planned: Outcome | None, now: datetime) -> Transaction:
        seq = next(self._sequence)
        stamp = now.strftime("%d%m%Y%H%M%S")
        transaction = Transaction(
            checkout_request_id=f"ws_CO_{stamp}{seq:06d}{secrets.randbelow(10**4):04d}",
            merchant_request_id=f"{secrets.randbelow(10**5):05d}-{seq:08d}-1",
            push=push,
            planned=planned,
            created_at=now,
        )
        self._transactions[transaction.checkout_request_id] = transaction
        return transaction

    def get(self, checkout_request_id: str) -> Transaction:
        try:
            return self._transactions[checkout_request_id]
        except KeyError:
            raise UnknownCheckout(checkout_request_id) from None

    def complete(self, checkout_request_id: str, now: datetime) -> Transaction:
        """Settle the push with its planned outcome; a success is a charge from this moment."""
        transaction = self.get(checkout_request_id)
        if transaction.planned is None:
            raise ValueError(f"{checkout_request_id} is never meant to complete")
        if transaction.state is TransactionState.PENDING:
            transaction.state = TransactionState.COMPLETED
            transaction.result = transaction.planned
            transaction.completed_at = now
            if transaction.result.succeeded:
                transaction.receipt = _receipt()
        return transaction

    def record_callback(self, checkout_request_id: str, delivered: bool) -> None:
        self.get(checkout_request_id).callback = (
            CallbackDelivery.DELIVERED if delivered else CallbackDelivery.FAILED
        )

    def transactions(self) -> list[Transaction]:
        return list(self._transactions.values())


def _receipt() -> str:
    return "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(10))

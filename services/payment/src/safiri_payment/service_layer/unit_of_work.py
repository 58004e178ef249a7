"""Payment's unit of work (one transaction; emitted events go to the outbox with it), and its
store of one-statement operations (each a transaction of its own, without BEGIN and COMMIT)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self

from safiri_contracts import Message

from ..domain.payments import Payment

__all__ = ["PaymentStore", "Recorded", "StoredPayment", "UnitOfWork", "UnitOfWorkFactory"]


@dataclass(frozen=True)
class StoredPayment:
    payment: Payment
    callback_token_hash: str
    trace_context: Mapping[str, str]
    age: timedelta = timedelta(0)  # since the payment was recorded


class UnitOfWork(Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    def emit(self, message: Message) -> None: ...

    async def first_delivery(self, message_id: str) -> bool: ...

    async def add(self, payment: Payment, callback_token_hash: str) -> bool:
        """Insert; ``False`` if the order already has a payment (at most one charge)."""
        ...

    async def get(self, payment_id: str) -> StoredPayment | None:
        """The payment, locked until the unit of work ends."""
        ...

    async def save(self, payment: Payment) -> None:
        """Write the payment's state (and may write the events emitted so far with it)."""
        ...

    async def overdue(self, older_than: timedelta, limit: int) -> list[StoredPayment]:
        """Payments without a verdict, unchanged for ``older_than``: pushes the provider took
        (they have a CheckoutRequestID) and pushes whose answer was never recorded (none)."""
        ...

    async def touch(self, payment_id: str) -> None:
        """Mark the payment as looked at now (it is overdue again only later)."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class Recorded(StrEnum):
    """What recording a payment request did."""

    PAYMENT = "payment"  # the message and the new payment are recorded
    ORDER_HAS_PAYMENT = "order_has_payment"  # only the message: the order already has a payment
    DUPLICATE = "duplicate"  # nothing: another delivery of the message was recorded first


class PaymentStore(Protocol):
    """Payment's one-statement operations for a purchase's path: each is atomic on its own,
    without the BEGIN and COMMIT round trips a unit of work adds around its statements."""

    async def handled(self, message_id: str) -> bool:
        """Whether ``message_id`` was processed before (its delivery was recorded)."""
        ...

    async def record_request(
        self, message_id: str, payment: Payment, callback_token_hash: str
    ) -> Recorded:
        """Record the message as processed and insert the payment, together or not at all
        (at most one charge per order, each message processed once)."""
        ...

    async def save_if_unchanged(self, before: Payment, after: Payment) -> bool:
        """Write ``after`` (what ``UnitOfWork.save`` writes) only if the stored payment still
        is ``before``; ``False``, writing nothing, if it changed since (decide again, locked)."""
        ...

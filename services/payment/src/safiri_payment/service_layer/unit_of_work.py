"""Payment's unit of work: one transaction; emitted events go to the outbox with it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Protocol, Self

from safiri_contracts import Message

from ..domain.payments import Payment

__all__ = ["StoredPayment", "UnitOfWork", "UnitOfWorkFactory"]


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

    async def save(self, payment: Payment) -> None: ...

    async def overdue(self, older_than: timedelta, limit: int) -> list[StoredPayment]:
        """Payments without a verdict, unchanged for ``older_than``: pushes the provider took
        (they have a CheckoutRequestID) and pushes whose answer was never recorded (none)."""
        ...

    async def touch(self, payment_id: str) -> None:
        """Mark the payment as looked at now (it is overdue again only later)."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]

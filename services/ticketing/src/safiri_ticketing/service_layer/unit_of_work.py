"""The unit of work: one transaction, the repositories inside it, and the events it emits.

It rolls back unless committed; events emitted inside it are written to the outbox in the same
transaction, so a state change and the message announcing it commit or vanish together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from safiri_contracts import Message

from ..domain.orders import Order, Refund
from ..domain.trips import Trip

__all__ = ["UnitOfWork", "UnitOfWorkFactory"]


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

    async def lock_trip(self, trip_id: str) -> Trip | None: ...

    async def free_seats(self, trip_id: str, count: int) -> list[int]: ...

    async def add_order(self, order: Order) -> None: ...

    async def order_for_request(self, request_key: str) -> Order | None:
        """The order created by the request with this key, if any."""
        ...

    async def get_order(self, order_id: str) -> Order | None:
        """The order, locked for update until the unit of work ends."""
        ...

    async def save_order(self, order: Order) -> None:
        """Persist a transition: tickets for a confirmed order, released seats otherwise."""
        ...

    async def take_seats(self, order: Order) -> None:
        """Allocate ``order.seats`` to the order again (they must be free: the trip is locked)."""
        ...

    async def record_refund(self, refund: Refund) -> None: ...

    async def expired_orders(
        self, now: datetime, limit: int
    ) -> list[tuple[Order, Mapping[str, str]]]:
        """Pending orders whose hold ran out, locked, each with the trace it was placed in."""
        ...


UnitOfWorkFactory = Callable[[], UnitOfWork]

"""The unit of work: one transaction, the repositories inside it, and the events it emits.

It rolls back unless committed; events emitted inside it are written to the outbox in the same
transaction, so a state change and the message announcing it commit or vanish together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from safiri_contracts import Message

from ..domain.orders import Order, Refund
from ..domain.trips import Trip

__all__ = ["LockedTrip", "UnitOfWork", "UnitOfWorkFactory"]


@dataclass(frozen=True)
class LockedTrip:
    """A trip whose row this unit of work has locked, and what was read under that lock."""

    trip: Trip
    # Up to the number of seats asked for, lowest first.
    free_seats: list[int]
    # The order an earlier request with the same key created, if one did.
    earlier: Order | None = None


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

    async def lock_trip(
        self, trip_id: str, seat_count: int, request_key: str | None = None
    ) -> LockedTrip | None:
        """Lock the trip (``None`` if no such trip is still to depart), then read, under the
        lock, up to ``seat_count`` free seats and the order ``request_key`` created before."""
        ...

    async def free_seats(self, trip_id: str, count: int) -> list[int]: ...

    async def add_order(self, order: Order) -> None:
        """Write the order, its seats' allocations and the events emitted so far."""
        ...

    async def first_delivery_of_order(
        self, message_id: str, order_id: str
    ) -> tuple[bool, Order | None]:
        """Record ``message_id`` in the inbox, then lock the order: ``False`` if the message
        was processed before (the order is then not read), and the order, if there is one."""
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

"""Orders and their state machine. Pure: no I/O, no frameworks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "MAX_SEATS_PER_ORDER",
    "InvalidTransition",
    "Order",
    "OrderStatus",
    "Refund",
    "Ticket",
]

MAX_SEATS_PER_ORDER = 6


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "PENDING_PAYMENT"
    CONFIRMED = "CONFIRMED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    EXPIRED = "EXPIRED"

    @property
    def is_final(self) -> bool:
        return self is not OrderStatus.PENDING_PAYMENT


class InvalidTransition(Exception):
    """An order was asked to move from a state that does not allow it."""


@dataclass(frozen=True)
class Ticket:
    ticket_id: str
    seat_no: int


@dataclass
class Order:
    order_id: str
    trip_id: str
    seat_count: int
    phone: str
    seats: list[int]
    amount: int
    currency: str
    expires_at: datetime
    created_at: datetime
    route: str = ""
    status: OrderStatus = OrderStatus.PENDING_PAYMENT
    failure_reason: str | None = None
    payment_receipt: str | None = None
    tickets: list[Ticket] = field(default_factory=list)
    request_key: str | None = None

    def confirm(self, receipt: str | None, ticket_ids: list[str]) -> None:
        """Payment succeeded: issue one ticket per held seat."""
        self._require_pending("confirm")
        self.status = OrderStatus.CONFIRMED
        self.payment_receipt = receipt
        self.tickets = [Ticket(tid, seat) for tid, seat in zip(ticket_ids, self.seats, strict=True)]

    def confirm_late(self, seats: list[int], receipt: str | None, ticket_ids: list[str]) -> None:
        """A payment succeeded after the order ended: it is confirmed on ``seats``, free again."""
        if self.status not in (OrderStatus.EXPIRED, OrderStatus.PAYMENT_FAILED):
            raise InvalidTransition(f"cannot confirm order {self.order_id} late in {self.status}")
        if len(seats) != self.seat_count:
            raise InvalidTransition(f"order {self.order_id} needs {self.seat_count} seats")
        self.status = OrderStatus.PENDING_PAYMENT
        self.seats = list(seats)
        self.failure_reason = None
        self.confirm(receipt, ticket_ids)

    def fail(self, reason: str) -> None:
        """Payment failed: the order ends and its seats go back on sale."""
        self._require_pending("fail")
        self.status = OrderStatus.PAYMENT_FAILED
        self.failure_reason = reason

    def expire(self, now: datetime) -> None:
        """The hold ran out before the payment resolved."""
        self._require_pending("expire")
        if now < self.expires_at:
            raise InvalidTransition(f"order {self.order_id} hold runs until {self.expires_at}")
        self.status = OrderStatus.EXPIRED
        self.failure_reason = "seat hold expired before the payment completed"

    def _require_pending(self, action: str) -> None:
        if self.status is not OrderStatus.PENDING_PAYMENT:
            raise InvalidTransition(f"cannot {action} order {self.order_id} in {self.status}")


@dataclass(frozen=True)
class Refund:
    """Money taken for an order that cannot have its seats: owed back to the customer."""

    order_id: str
    amount: int
    currency: str
    payment_receipt: str | None
    reason: str

"""In-memory fakes behind the same interfaces as the PostgreSQL units of work."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from safiri_contracts import Message
from safiri_payment.domain.payments import InvalidTransition, Payment
from safiri_payment.service_layer.unit_of_work import Recorded, StoredPayment
from safiri_telemetry import inject_carrier
from safiri_ticketing.domain.orders import Order, OrderStatus, Refund
from safiri_ticketing.domain.trips import Trip
from safiri_ticketing.service_layer.unit_of_work import LockedTrip


class _FakeTransaction:
    """Copies state on enter; keeps the copy only on commit, like a rolled-back transaction."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.committed = False

    async def __aenter__(self) -> Self:
        self.state = copy.deepcopy(self.db.state)
        self.pending: list[tuple[str, Mapping[str, Any]]] = []
        self.committed = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def commit(self) -> None:
        self.db.state = self.state
        self.db.outbox.extend(self.pending)
        self.committed = True

    def emit(self, message: Message) -> None:
        self.pending.append((message.routing_key, message.to_payload()))

    async def first_delivery(self, message_id: str) -> bool:
        if message_id in self.state["inbox"]:
            return False
        self.state["inbox"].add(message_id)
        return True


class FakeTicketingDb:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {
            "trips": {},
            "orders": {},
            "allocations": {},
            "inbox": set(),
            "refunds": {},
        }
        self.outbox: list[tuple[str, Mapping[str, Any]]] = []

    def add_trip(self, trip: Trip) -> None:
        self.state["trips"][trip.trip_id] = trip

    def uow(self) -> FakeTicketingUow:
        return FakeTicketingUow(self)


class FakeTicketingUow(_FakeTransaction):
    async def lock_trip(
        self, trip_id: str, seat_count: int, request_key: str | None = None
    ) -> LockedTrip | None:
        trip: Trip | None = self.state["trips"].get(trip_id)
        if trip is None:
            return None
        earlier = await self.order_for_request(request_key) if request_key is not None else None
        return LockedTrip(trip, await self.free_seats(trip_id, seat_count), earlier)

    async def free_seats(self, trip_id: str, count: int) -> list[int]:
        trip = self.state["trips"][trip_id]
        taken = {seat for (t, seat) in self.state["allocations"] if t == trip_id}
        return [s for s in range(1, trip.seats_total + 1) if s not in taken][:count]

    async def add_order(self, order: Order) -> None:
        for seat in order.seats:
            key = (order.trip_id, seat)
            assert key not in self.state["allocations"], "seat allocated twice"
            self.state["allocations"][key] = order.order_id
        self.state["orders"][order.order_id] = copy.deepcopy(order)

    async def first_delivery_of_order(
        self, message_id: str, order_id: str
    ) -> tuple[bool, Order | None]:
        if not await self.first_delivery(message_id):
            return False, None
        order: Order | None = copy.deepcopy(self.state["orders"].get(order_id))
        return True, order

    async def order_for_request(self, request_key: str) -> Order | None:
        for order in self.state["orders"].values():
            if order.request_key == request_key:
                return copy.deepcopy(order)  # type: ignore[no-any-return]
        return None

    async def save_order(self, order: Order) -> None:
        self.state["orders"][order.order_id] = copy.deepcopy(order)
        if order.status in (OrderStatus.PAYMENT_FAILED, OrderStatus.EXPIRED):
            for seat in order.seats:
                self.state["allocations"].pop((order.trip_id, seat), None)

    async def take_seats(self, order: Order) -> None:
        for seat in order.seats:
            key = (order.trip_id, seat)
            assert key not in self.state["allocations"], "seat allocated twice"
            self.state["allocations"][key] = order.order_id
        self.state["orders"][order.order_id] = copy.deepcopy(order)

    async def record_refund(self, refund: Refund) -> None:
        self.state["refunds"].setdefault(refund.order_id, refund)

    async def expired_orders(
        self, now: datetime, limit: int
    ) -> list[tuple[Order, Mapping[str, str]]]:
        return [
            (copy.deepcopy(o), {})
            for o in self.state["orders"].values()
            if o.status is OrderStatus.PENDING_PAYMENT and o.expires_at <= now
        ][:limit]


def _keep_verdict(old: Payment, new: Payment) -> None:
    """The real schema's trigger: a settled payment's verdict is never written over."""
    verdict = ("status", "result_code", "result_desc", "receipt")
    if old.status.is_final and any(getattr(old, a) != getattr(new, a) for a in verdict):
        raise InvalidTransition(f"payment {old.payment_id} is {old.status} already")


class FakePaymentDb:
    def __init__(self) -> None:
        self.state: dict[str, Any] = {
            "payments": {},
            "inbox": set(),
            "touched": {},
            "created": {},
        }
        self.outbox: list[tuple[str, Mapping[str, Any]]] = []
        self.now = timedelta(0)  # the fake's clock; tests move it forward

    def uow(self) -> FakePaymentUow:
        return FakePaymentUow(self)

    # The one-statement store (PaymentStore): each call commits at once.

    async def handled(self, message_id: str) -> bool:
        return message_id in self.state["inbox"]

    async def record_request(
        self, message_id: str, payment: Payment, callback_token_hash: str
    ) -> Recorded:
        if message_id in self.state["inbox"]:
            return Recorded.DUPLICATE
        self.state["inbox"].add(message_id)
        if any(p.payment.order_id == payment.order_id for p in self.state["payments"].values()):
            return Recorded.ORDER_HAS_PAYMENT
        self.state["payments"][payment.payment_id] = StoredPayment(
            copy.deepcopy(payment), callback_token_hash, inject_carrier()
        )
        self.state["created"][payment.payment_id] = self.now
        self.state["touched"][payment.payment_id] = self.now
        return Recorded.PAYMENT

    async def save_if_unchanged(self, before: Payment, after: Payment) -> bool:
        stored = self.state["payments"].get(after.payment_id)
        if stored is None or stored.payment != before:
            return False
        _keep_verdict(stored.payment, after)
        self.state["payments"][after.payment_id] = StoredPayment(
            copy.deepcopy(after), stored.callback_token_hash, stored.trace_context
        )
        self.state["touched"][after.payment_id] = self.now
        return True


class FakePaymentUow(_FakeTransaction):
    async def add(self, payment: Payment, callback_token_hash: str) -> bool:
        if any(p.payment.order_id == payment.order_id for p in self.state["payments"].values()):
            return False
        # The active context, as the real adapter stores it (its baggage keeps the canary arm).
        self.state["payments"][payment.payment_id] = StoredPayment(
            copy.deepcopy(payment), callback_token_hash, inject_carrier()
        )
        self.state["created"][payment.payment_id] = self.db.now
        await self.touch(payment.payment_id)
        return True

    async def get(self, payment_id: str) -> StoredPayment | None:
        stored: StoredPayment | None = copy.deepcopy(self.state["payments"].get(payment_id))
        return stored

    async def save(self, payment: Payment) -> None:
        old = self.state["payments"][payment.payment_id]
        _keep_verdict(old.payment, payment)
        self.state["payments"][payment.payment_id] = StoredPayment(
            copy.deepcopy(payment), old.callback_token_hash, old.trace_context
        )
        await self.touch(payment.payment_id)

    async def overdue(self, older_than: timedelta, limit: int) -> list[StoredPayment]:
        """Unsettled payments untouched for ``older_than`` of ``db.now``."""
        due = [
            StoredPayment(
                copy.deepcopy(stored.payment),
                stored.callback_token_hash,
                stored.trace_context,
                self.db.now - self.state["created"][payment_id],
            )
            for payment_id, stored in self.state["payments"].items()
            if not stored.payment.status.is_final
            and self.db.now - self.state["touched"].get(payment_id, self.db.now) >= older_than
        ]
        return due[:limit]

    async def touch(self, payment_id: str) -> None:
        self.state["touched"][payment_id] = self.db.now

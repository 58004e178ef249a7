"""Ticketing's use cases. Each is one business step, one span, one unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from loguru import logger
from opentelemetry.trace import Span

from safiri_contracts import PaymentRequested, PaymentSucceeded
from safiri_contracts import PaymentResult as PaymentResultMessage
from safiri_messaging import PoisonMessage
from safiri_telemetry import business_span, context_from_carrier

from ..domain.orders import Order, OrderStatus, Refund
from ..domain.trips import SeatsUnavailable, TripNotFound
from ..metrics import TicketingMetrics
from .unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = ["HoldSeats", "PaymentResult", "Ticketing"]

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class HoldSeats:
    trip_id: str
    seat_count: int
    phone: str
    # The caller's key for this purchase: asked twice (a retry after a timeout), the order
    # the first request created is the answer.
    request_key: str | None = None


@dataclass(frozen=True)
class PaymentResult:
    message_id: str
    order_id: str
    succeeded: bool
    result_code: int | None
    result_desc: str
    receipt: str | None

    @classmethod
    def from_message(cls, message_id: str, message: PaymentResultMessage) -> PaymentResult:
        """From a decoded ``PaymentSucceeded`` or ``PaymentFailed`` message."""
        return cls(
            message_id=message_id,
            order_id=message.order_id,
            succeeded=isinstance(message, PaymentSucceeded),
            result_code=message.result_code,
            result_desc=message.result_desc,
            receipt=message.receipt,
        )


class Ticketing:
    """The use cases, wired to a unit-of-work factory, a clock and the metrics."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        metrics: TicketingMetrics,
        clock: Clock,
        hold_ttl: timedelta,
    ) -> None:
        self._uow = uow
        self._metrics = metrics
        self._clock = clock
        self._hold_ttl = hold_ttl
        for resolution in ("seats_retaken", "refund"):
            metrics.late_payments.labels(resolution)

    async def hold_seats(self, cmd: HoldSeats) -> Order:
        """Hold seats and ask for payment, atomically; raises if the seats are not there."""
        attrs = {"safiri.trip.id": cmd.trip_id, "safiri.seat_count": cmd.seat_count}
        with business_span("hold_seats", attrs, refusals=(SeatsUnavailable, TripNotFound)) as span:
            async with self._uow() as uow:
                # The request key's earlier order is read under the trip's lock: a concurrent
                # repeat waits for it and then finds the order.
                locked = await uow.lock_trip(cmd.trip_id, cmd.seat_count, cmd.request_key)
                if locked is None:
                    self._metrics.seat_holds.labels("unknown_trip").inc()
                    raise TripNotFound(cmd.trip_id)
                trip, seats, earlier = locked.trip, locked.free_seats, locked.earlier
                if earlier is not None:
                    span.set_attribute("safiri.order.id", earlier.order_id)
                    span.set_attribute("safiri.order.repeated", True)
                    self._metrics.seat_holds.labels("repeated").inc()
                    logger.bind(order_id=earlier.order_id).info(
                        "order request repeated; answered with the order it created"
                    )
                    return earlier
                if len(seats) < cmd.seat_count:
                    self._metrics.seat_holds.labels("unavailable").inc()
                    raise SeatsUnavailable(
                        f"{cmd.seat_count} seats asked, {len(seats)} free on trip {cmd.trip_id}"
                    )
                now = self._clock()
                order = Order(
                    order_id=str(uuid.uuid4()),
                    trip_id=trip.trip_id,
                    seat_count=cmd.seat_count,
                    phone=cmd.phone,
                    seats=seats,
                    amount=trip.fare * cmd.seat_count,
                    currency=trip.currency,
                    expires_at=now + self._hold_ttl,
                    created_at=now,
                    route=f"{trip.origin}-{trip.destination}",
                    request_key=cmd.request_key,
                )
                span.set_attribute("safiri.order.id", order.order_id)
                span.set_attribute("safiri.amount", order.amount)
                with logger.contextualize(order_id=order.order_id, trip_id=trip.trip_id):
                    # Emitted first, so that the order's write carries it to the outbox.
                    uow.emit(
                        PaymentRequested(
                            order_id=order.order_id,
                            trip_id=order.trip_id,
                            amount=order.amount,
                            currency=order.currency,
                            phone=order.phone,
                            description=f"{order.route} x{order.seat_count}",
                        )
                    )
                    await uow.add_order(order)
                    await uow.commit()
                    logger.bind(seats=seats, amount=order.amount).info("seats held")
        self._metrics.seat_holds.labels("held").inc()
        return order

    async def record_payment_result(self, result: PaymentResult) -> None:
        """Confirm the order (tickets) or release its seats; a redelivery changes nothing."""
        step = "confirm_order" if result.succeeded else "release_seats"
        attrs = {
            "safiri.order.id": result.order_id,
            "safiri.payment.result_code": result.result_code,
            "safiri.payment.succeeded": result.succeeded,
        }
        with business_span(step, attrs) as span, logger.contextualize(order_id=result.order_id):
            async with self._uow() as uow:
                first, order = await uow.first_delivery_of_order(result.message_id, result.order_id)
                if not first:
                    logger.info("payment result already recorded; duplicate ignored")
                    return
                if order is None:
                    raise PoisonMessage(f"payment result for unknown order {result.order_id}")
                if order.status is not OrderStatus.PENDING_PAYMENT:
                    if result.succeeded and (
                        order.status is not OrderStatus.CONFIRMED
                        or result.receipt not in (None, order.payment_receipt)
                    ):
                        await self._resolve_late_payment(uow, order, result, span)
                        return
                    # A failure (or a repeat of the success that confirmed it) for an order that
                    # already ended changes nothing; the inbox keeps it from being reprocessed.
                    logger.bind(status=order.status.value, succeeded=result.succeeded).warning(
                        "payment result for an order that is no longer pending"
                    )
                    await uow.commit()
                    return
                if result.succeeded:
                    order.confirm(result.receipt, [str(uuid.uuid4()) for _ in order.seats])
                else:
                    code = f" (ResultCode {result.result_code})" if result.result_code else ""
                    order.fail(f"{result.result_desc}{code}")
                await uow.save_order(order)
                await uow.commit()
            self._count_final(order)
            logger.bind(status=order.status.value, trip_id=order.trip_id).info("order final")

    async def _resolve_late_payment(
        self, uow: UnitOfWork, order: Order, result: PaymentResult, span: Span
    ) -> None:
        """Money arrived for an order that had ended: seats again if there are any, else a refund.

        The customer paid, so they either travel or get their money back; nobody else's seat is
        taken for it.
        """
        span.set_attribute("safiri.payment.late", True)
        was = order.status
        seats: list[int] = []
        if was is not OrderStatus.CONFIRMED:
            locked = await uow.lock_trip(order.trip_id, order.seat_count)
            # A trip that has departed is not locked, yet its free seats are still looked for.
            seats = (
                locked.free_seats
                if locked is not None
                else await uow.free_seats(order.trip_id, order.seat_count)
            )
        if len(seats) == order.seat_count:
            order.confirm_late(seats, result.receipt, [str(uuid.uuid4()) for _ in seats])
            await uow.take_seats(order)
            await uow.save_order(order)
            resolution = "seats_retaken"
        else:
            reason = f"paid after the order was {was.value}; " + (
                "it was already paid" if was is OrderStatus.CONFIRMED else "its seats were sold"
            )
            await uow.record_refund(
                Refund(order.order_id, order.amount, order.currency, result.receipt, reason)
            )
            resolution = "refund"
        await uow.commit()
        span.set_attribute("safiri.late_payment.resolution", resolution)
        self._metrics.late_payments.labels(resolution).inc()
        if order.status is OrderStatus.CONFIRMED and was is not OrderStatus.CONFIRMED:
            self._count_final(order)
        logger.bind(previous_status=was.value, resolution=resolution, seats=order.seats).warning(
            "payment succeeded after the order had ended"
        )

    async def release_expired_holds(self, limit: int = 100) -> int:
        """Expire pending orders whose hold ran out; each in its own purchase's trace."""
        now = self._clock()
        async with self._uow() as uow:
            expired = await uow.expired_orders(now, limit)
            for order, trace_context in expired:
                with (
                    business_span(
                        "expire_hold",
                        {"safiri.order.id": order.order_id, "safiri.trip.id": order.trip_id},
                        parent=context_from_carrier(trace_context),
                    ),
                    logger.contextualize(order_id=order.order_id, trip_id=order.trip_id),
                ):
                    order.expire(now)
                    await uow.save_order(order)
                    logger.info("seat hold expired; seats released")
            await uow.commit()
        for order, _ in expired:
            self._count_final(order)
        return len(expired)

    def _count_final(self, order: Order) -> None:
        self._metrics.orders_final.labels(order.status.value).inc()
        if order.status is OrderStatus.CONFIRMED:
            self._metrics.tickets_sold.labels(order.route).inc(order.seat_count)

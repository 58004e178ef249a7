"""Ticketing's consumers: payment results and the fleet's GPS fixes, message → use case."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from safiri_contracts import FLEET_POSITIONS, PAYMENT_RESULTS, BusPositionReported, InvalidMessage
from safiri_contracts import PaymentResult as PaymentResultMessage
from safiri_messaging import Envelope

from ..adapters.fleet import FleetPositions
from ..domain.fleet import BusNotOnTrip, Position, PositionFromFuture
from ..service_layer.handlers import PaymentResult, Ticketing

__all__ = [
    "FLEET_POSITIONS",
    "PAYMENT_RESULTS",
    "fleet_positions_handler",
    "payment_results_handler",
]

Handler = Callable[[Envelope], Awaitable[None]]


def payment_results_handler(ticketing: Ticketing) -> Handler:
    async def handle(envelope: Envelope) -> None:
        message = envelope.decode(PAYMENT_RESULTS)  # PaymentSucceeded | PaymentFailed
        if not isinstance(message, PaymentResultMessage):  # pragma: no cover - by the contract
            raise InvalidMessage(f"{type(message).__name__} is not a payment result")
        await ticketing.record_payment_result(
            PaymentResult.from_message(envelope.message_id, message)
        )

    return handle


def fleet_positions_handler(positions: FleetPositions, now: Callable[[], datetime]) -> Handler:
    """Keeps each bus's newest fix. No inbox: the upsert is idempotent (a redelivered or late
    fix is older than or equal to the stored one and changes nothing), and fixes are many.
    A fix for a trip the bus does not run, or from the future, can never be stored: poison."""

    async def handle(envelope: Envelope) -> None:
        message = envelope.decode(FLEET_POSITIONS)
        if not isinstance(message, BusPositionReported):  # pragma: no cover - by the contract
            raise InvalidMessage(f"{type(message).__name__} is not a bus position")
        position = Position(
            message.bus_id,
            message.trip_id,
            message.latitude,
            message.longitude,
            message.recorded_at,
            message.speed_kmh,
            message.heading_degrees,
        )
        try:
            position.check_not_ahead_of(now())
            await positions.record(position)
        except (BusNotOnTrip, PositionFromFuture) as exc:
            raise InvalidMessage(str(exc)) from None

    return handle

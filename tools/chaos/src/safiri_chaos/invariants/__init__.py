"""The invariant checker: what must hold after any run, faults or not.

``check(snapshot, limits, ops)`` is pure; ``read_snapshot`` takes the snapshot from the
databases (read-only), the simulator's ledger and the broker's dead-letter queues.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..history import Op
from .messaging import check_dead_letters, check_outboxes_drained
from .model import (
    IdempotencyRecord,
    LedgerEntry,
    Limits,
    OrderRow,
    OutboxRow,
    PaymentRow,
    SeatClaim,
    Snapshot,
    TripSeats,
)
from .money import check_ledger, check_payments
from .operations import check_operations
from .orders import check_orders_final, in_flight
from .report import Check, InvariantReport, Violation
from .seats import check_seat_accounting, check_seats_sold_once

__all__ = [
    "Check",
    "IdempotencyRecord",
    "InvariantReport",
    "LedgerEntry",
    "Limits",
    "OrderRow",
    "OutboxRow",
    "PaymentRow",
    "SeatClaim",
    "Snapshot",
    "TripSeats",
    "Violation",
    "check",
    "in_flight",
]


def check(
    snapshot: Snapshot,
    limits: Limits,
    ops: Iterable[Op] | None = None,
    client: str | None = None,
) -> InvariantReport:
    """Every invariant of ``snapshot``; ``ops`` (a recorded history) made by ``client``."""
    checks = [
        check_something_to_check(snapshot, limits, ops),
        check_seats_sold_once(snapshot),
        check_seat_accounting(snapshot),
        check_orders_final(snapshot, limits),
        check_payments(snapshot),
        check_ledger(snapshot, limits),
        check_outboxes_drained(snapshot, limits),
        check_dead_letters(snapshot, limits),
    ]
    if ops is not None:
        checks.append(check_operations(ops, snapshot, client))
    return InvariantReport(snapshot.taken_at, checks)


def check_something_to_check(snapshot: Snapshot, limits: Limits, ops: Iterable[Op] | None) -> Check:
    """In chaos mode an empty state proves nothing: every other check would pass on it."""
    check = Check("there is something to check")
    check.facts = {"trips": len(snapshot.trips), "orders": len(snapshot.orders)}
    if not limits.strict:
        return check
    if not snapshot.trips:
        check.violate("empty snapshot", "ticketing's database", "no trip: is this the suite?")
    elif not snapshot.orders:
        check.violate("empty snapshot", "ticketing's database", "no order was ever placed")
    if ops is None:
        check.violate("no recorded history", "history.jsonl", "the purchases were not recorded")
    return check

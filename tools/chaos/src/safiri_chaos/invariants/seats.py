"""Seats: none sold twice, and every seat of a trip is exactly one of held, sold or free."""

from __future__ import annotations

from collections import Counter, defaultdict

from .model import SeatClaim, Snapshot
from .report import Check

__all__ = ["check_seat_accounting", "check_seats_sold_once"]


def check_seats_sold_once(snapshot: Snapshot) -> Check:
    check = Check("no seat sold twice")
    for what, claims in (("ticket", snapshot.tickets), ("allocation", snapshot.allocations)):
        seen: dict[tuple[str, int], list[str]] = defaultdict(list)
        for claim in claims:
            seen[(claim.trip_id, claim.seat_no)].append(claim.order_id)
        for (trip_id, seat_no), orders in sorted(seen.items()):
            if len(orders) > 1:
                name = "seat sold twice" if what == "ticket" else "seat allocated twice"
                check.violate(
                    name, f"trip {trip_id} seat {seat_no}", f"{what}s of orders {sorted(orders)}"
                )
    check.facts = {"tickets": len(snapshot.tickets), "allocations": len(snapshot.allocations)}
    return check


def check_seat_accounting(snapshot: Snapshot) -> Check:
    """held + sold + free = capacity for every trip.

    held: allocations, not sold, of orders still pending; sold: seats ticketed to confirmed
    orders; free: seats with no allocation. A seat left allocated to an order that ended
    unpaid, or sold without a ticket, is none of the three, and the sum falls short.
    """
    check = Check("held + sold + free = capacity")
    status = {o.order_id: o.status for o in snapshot.orders}
    held: Counter[str] = Counter()
    allocated: dict[str, set[int]] = defaultdict(set)
    for a in snapshot.allocations:
        allocated[a.trip_id].add(a.seat_no)
        if not a.sold and status.get(a.order_id) == "PENDING_PAYMENT":
            held[a.trip_id] += 1
    sold = _confirmed_seats(snapshot.tickets, status)
    totals = Counter[str]()
    for trip in snapshot.trips:
        n_held, n_sold = held[trip.trip_id], len(sold[trip.trip_id])
        n_free = trip.seat_rows - len(allocated[trip.trip_id])
        totals.update(held=n_held, sold=n_sold, free=n_free, capacity=trip.capacity)
        if n_held + n_sold + n_free != trip.capacity:
            check.violate(
                "held + sold + free ≠ capacity",
                f"trip {trip.trip_id}",
                f"held {n_held} + sold {n_sold} + free {n_free} = "
                f"{n_held + n_sold + n_free}, capacity {trip.capacity}",
            )
    check.facts = {"trips": len(snapshot.trips), **totals}
    return check


def _confirmed_seats(tickets: list[SeatClaim], status: dict[str, str]) -> dict[str, set[int]]:
    sold: dict[str, set[int]] = defaultdict(set)
    for t in tickets:
        if status.get(t.order_id) == "CONFIRMED":
            sold[t.trip_id].add(t.seat_no)
    return sold

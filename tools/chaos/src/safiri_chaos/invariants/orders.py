"""Every accepted order reaches a final state, within a bound."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from .model import Limits, OrderRow, Snapshot
from .report import Check

__all__ = ["check_orders_final", "final_deadline", "in_flight"]


def final_deadline(order: OrderRow, limits: Limits) -> datetime:
    """When ``order`` must be final by.

    Its hold plus a grace for the sweeper; for an order placed before the fault healed, also
    no earlier than the heal plus the settle bound (a payment held up by the fault has until
    then to resolve).
    """
    deadline = order.created_at + timedelta(
        seconds=limits.hold_ttl_seconds + limits.final_grace_seconds
    )
    healed = limits.healed_at
    if healed is not None and order.created_at <= healed:
        deadline = max(deadline, healed + timedelta(seconds=limits.settle_bound_seconds))
    return deadline


def in_flight(snapshot: Snapshot, limits: Limits) -> list[OrderRow]:
    """Pending orders that are still within their bound: not (yet) a violation."""
    return [
        o
        for o in snapshot.orders
        if not o.is_final and snapshot.taken_at <= final_deadline(o, limits)
    ]


def check_orders_final(snapshot: Snapshot, limits: Limits) -> Check:
    check = Check("every accepted order final in time")
    statuses = Counter(o.status for o in snapshot.orders)
    latest_after_heal: float | None = None
    for order in snapshot.orders:
        deadline = final_deadline(order, limits)
        if not order.is_final:
            if snapshot.taken_at > deadline:
                late = (snapshot.taken_at - deadline).total_seconds()
                check.violate(
                    "order not final in time",
                    f"order {order.order_id}",
                    f"still PENDING_PAYMENT {late:.1f} s past its bound ({deadline:%H:%M:%S})",
                )
            continue
        if order.updated_at > deadline:
            late = (order.updated_at - deadline).total_seconds()
            check.violate(
                "order final too late",
                f"order {order.order_id}",
                f"{order.status} {late:.1f} s past its bound",
            )
        if limits.healed_at is not None and order.created_at <= limits.healed_at:
            after = max(0.0, (order.updated_at - limits.healed_at).total_seconds())
            latest_after_heal = max(after, latest_after_heal or after)
    check.facts = {"orders": len(snapshot.orders), "by_status": dict(sorted(statuses.items()))}
    check.facts["in_flight"] = len(in_flight(snapshot, limits))
    if latest_after_heal is not None:
        check.facts["last_final_after_heal_s"] = round(latest_after_heal, 1)
    return check

"""Money: every confirmed order charged exactly once, every charge paid for a confirmed order
or owed back.

The provider's ledger is the ground truth for "was money taken"; the payments table is what
Safiri believes. Both are checked against the orders, and the ledger both ways: a charge
without its order is money without tickets, a confirmed order without its charge is a free
ticket (which the payments table alone would not show: it is Safiri's own belief).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from .model import LedgerEntry, Limits, OrderRow, Snapshot
from .report import Check

__all__ = ["ACCOUNT_REFERENCE_LENGTH", "check_ledger", "check_payments"]

# Payment sends the order id's first 12 characters as the push's AccountReference (Daraja
# allows 12); that prefix is how a ledger entry finds its order.
ACCOUNT_REFERENCE_LENGTH = 12


def check_payments(snapshot: Snapshot) -> Check:
    check = Check("at most one successful payment per order")
    orders = {o.order_id: o for o in snapshot.orders}
    succeeded = Counter(p.order_id for p in snapshot.payments if p.status == "SUCCEEDED")
    for order_id, n in sorted(succeeded.items()):
        if n > 1:
            check.violate("order paid twice", f"order {order_id}", f"{n} successful payments")
        order = orders.get(order_id)
        if order_id in snapshot.refunds and (order is None or order.status != "CONFIRMED"):
            continue  # paid too late for its seats: the money is recorded as owed back
        if order is None or order.status != "CONFIRMED":
            status = order.status if order else "missing"
            check.violate(
                "payment without confirmed order",
                f"order {order_id}",
                f"the payment succeeded, the order is {status}",
            )
    for order in snapshot.orders:
        if order.status == "CONFIRMED" and not succeeded[order.order_id]:
            check.violate(
                "tickets without payment", f"order {order.order_id}", "no successful payment"
            )
    check.facts = {
        "payments": dict(sorted(Counter(p.status for p in snapshot.payments).items())),
        "refunds": len(snapshot.refunds),
    }
    return check


def check_ledger(snapshot: Snapshot, limits: Limits | None = None) -> Check:
    strict = limits is not None and limits.strict
    check = Check("the ledger and the confirmed orders agree, both ways")
    if snapshot.ledger is None:
        check.facts = {"ledger": "not read"}
        if strict:
            check.violate(
                "ledger not read",
                "the provider's ledger",
                "without it nothing shows whether money was taken, or taken once",
            )
        return check
    by_reference: dict[str, list[OrderRow]] = defaultdict(list)
    for order in snapshot.orders:
        by_reference[order.order_id[:ACCOUNT_REFERENCE_LENGTH]].append(order)
    charges: dict[str, list[LedgerEntry]] = defaultdict(list)
    for entry in snapshot.ledger:
        if entry.charged:
            charges[entry.account_reference].append(entry)
    for reference, entries in sorted(charges.items()):
        receipts = ", ".join(e.receipt or e.checkout_request_id for e in entries)
        if len(entries) > 1:
            check.violate(
                "order charged twice", f"account reference {reference}", f"charges {receipts}"
            )
        confirmed = [o for o in by_reference[reference] if o.status == "CONFIRMED"]
        refunded = [o for o in by_reference[reference] if o.order_id in snapshot.refunds]
        if not confirmed and refunded:
            if snapshot.refunds[refunded[0].order_id] != entries[0].amount:
                check.violate(
                    "refund differs from the charge",
                    f"order {refunded[0].order_id}",
                    f"charged {entries[0].amount}, refund {snapshot.refunds[refunded[0].order_id]}",
                )
        elif not confirmed:
            found = ", ".join(f"{o.order_id} {o.status}" for o in by_reference[reference])
            check.violate(
                "charge without confirmed order",
                f"account reference {reference}",
                f"charge {receipts} of {entries[0].amount}; order: {found or 'none'}"
                " (no refund recorded)",
            )
        elif all(o.amount != entries[0].amount for o in confirmed):
            check.violate(
                "charge amount differs from order",
                f"order {confirmed[0].order_id}",
                f"charged {entries[0].amount}, order amount {confirmed[0].amount}",
            )
    uncovered = _confirmed_orders_charged(check, snapshot, charges)
    states = Counter(
        "charged" if e.charged else ("failed" if e.state == "completed" else "never settled")
        for e in snapshot.ledger
    )
    check.facts = {"pushes": len(snapshot.ledger), **dict(sorted(states.items()))}
    providers = Counter(e.provider for e in snapshot.ledger)
    if set(providers) - {"mpesa"}:
        check.facts["pushes by provider"] = dict(sorted(providers.items()))
    if snapshot.ledger_since is not None:
        check.facts["since"] = f"{snapshot.ledger_since:%Y-%m-%d %H:%M:%S}"
        check.facts["durable"] = snapshot.ledger_durable
    if uncovered:
        check.facts["confirmed before the ledger began (not checked)"] = len(uncovered)
        if strict:
            check.violate(
                "ledger does not cover the orders",
                f"{len(uncovered)} confirmed order(s), e.g. {uncovered[0].order_id}",
                f"created before the ledger began ({snapshot.ledger_since:%H:%M:%S}): the"
                " simulator restarted without its journal (SAFIRI_MPESA_SIM_LEDGER_PATH)",
            )
    return check


def _confirmed_orders_charged(
    check: Check, snapshot: Snapshot, charges: dict[str, list[LedgerEntry]]
) -> list[OrderRow]:
    """Every confirmed order the ledger covers has its charge; returns those it does not cover."""
    since = snapshot.ledger_since
    uncovered = []
    for order in snapshot.orders:
        if order.status != "CONFIRMED":
            continue
        if since is not None and order.created_at < since:
            uncovered.append(order)
        elif not charges.get(order.order_id[:ACCOUNT_REFERENCE_LENGTH]):
            check.violate(
                "confirmed order without a charge",
                f"order {order.order_id}",
                f"CONFIRMED for {order.amount}, but the provider holds no charge for it"
                " (a free ticket)",
            )
    return uncovered

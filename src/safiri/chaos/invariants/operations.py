"""The recorded operations against the database: what each ok, fail and unknown became.

An ``ok`` purchase must have its order; a ``fail`` must not have taken effect; an ``unknown``
is resolved through the gateway's record of its Idempotency-Key: to the order's final state,
to "refused" when the gateway stored a refusal, to "never took effect" when it has no record
of the key, and to "unresolved" while its record is still in flight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ..history import Op
from .model import IdempotencyRecord, Snapshot
from .report import Check

__all__ = ["NEVER_TOOK_EFFECT", "REFUSED", "UNRESOLVED", "check_operations"]

NEVER_TOOK_EFFECT = "never took effect"
REFUSED = "refused"
UNRESOLVED = "unresolved"
MISSING = "order missing"


def check_operations(ops: Iterable[Op], snapshot: Snapshot) -> Check:
    check = Check("recorded operations accounted for")
    invoked: list[str] = []
    completed: dict[str, Op] = {}
    for recorded in ops:
        if recorded.type == "invoke":
            invoked.append(recorded.key)
        else:
            completed[recorded.key] = recorded
    orders = {o.order_id: o.status for o in snapshot.orders}
    counts: Counter[str] = Counter()
    became: dict[str, Counter[str]] = {"ok": Counter(), "unknown": Counter()}
    for key in invoked:
        op = completed.get(key)
        record = snapshot.idempotency.get(key)
        if op is None or op.type == "unknown":
            # An invoke that never completed (the recorder died) is as uncertain as a timeout.
            counts["unknown"] += 1
            outcome = _resolve(record, orders)
            became["unknown"][outcome] += 1
            if outcome == MISSING and record is not None:
                check.violate(
                    "acknowledged order lost",
                    f"order {record.order_id}",
                    f"the gateway answered it for key {key}; ticketing has no such order",
                )
        elif op.type == "ok":
            counts["ok"] += 1
            status = orders.get(op.order_id or "")
            became["ok"][status or MISSING] += 1
            if status is None:
                check.violate(
                    "acknowledged order lost", f"order {op.order_id}", f"answered 202 for key {key}"
                )
        else:
            counts["fail"] += 1
            if record is not None and record.order_id is not None:
                check.violate(
                    "failed purchase took effect",
                    f"order {record.order_id}",
                    f"answered {op.status} for key {key}, but the gateway holds an order",
                )
    check.facts = {
        "invoked": len(invoked),
        **{kind: counts[kind] for kind in ("ok", "fail", "unknown")},
        "ok_became": dict(sorted(became["ok"].items())),
        "unknown_became": dict(sorted(became["unknown"].items())),
    }
    return check


def _resolve(record: IdempotencyRecord | None, orders: dict[str, str]) -> str:
    if record is None:
        return NEVER_TOOK_EFFECT
    if record.status is None:
        return UNRESOLVED
    if record.order_id is None:
        return REFUSED
    return orders.get(record.order_id, MISSING)

"""The recorded operations against the database: what each ok, fail and unknown became.

An ``ok`` purchase must have its order; a ``fail`` must not have taken effect; an ``unknown``
is resolved through the gateway's record of its Idempotency-Key: to the order's final state,
to "refused" when the gateway stored a refusal, and to "unresolved" while its record is still
in flight. The gateway releases its record when ticketing timed out or failed (so the client
may retry), yet ticketing may have created the order: a key the gateway holds no record of is
looked up among ticketing's orders by the request key the gateway passed on (derived from the
client and the Idempotency-Key); only when neither has it did it "never take effect".
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

from ..history import Op
from .model import IdempotencyRecord, Snapshot
from .report import Check

__all__ = [
    "NEVER_TOOK_EFFECT",
    "REFUSED",
    "UNRESOLVED",
    "check_operations",
    "client_id",
    "request_key",
]

NEVER_TOOK_EFFECT = "never took effect"
REFUSED = "refused"
UNRESOLVED = "unresolved"
MISSING = "order missing"


def client_id(api_key: str) -> str:
    """The gateway's name for the holder of ``api_key`` (its public contract with ticketing)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def request_key(client: str, key: str) -> str:
    """The key ticketing deduplicates a purchase on, as the gateway derives it."""
    return hashlib.sha256(f"{client}\x00{key}".encode()).hexdigest()


def check_operations(ops: Iterable[Op], snapshot: Snapshot, client: str | None = None) -> Check:
    """``client``: the ``client_id`` of the API key the operations used; without it a key
    the gateway released cannot be looked up in ticketing (the facts say so)."""
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
        if record is None and client is not None:
            # Released by the gateway (ticketing timed out): did ticketing create it anyway?
            created = snapshot.request_keys.get(request_key(client, key))
            if created is not None:
                record = IdempotencyRecord(key, None, created, by_request_key=True)
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
                    f"answered {op.status} for key {key}, but an order exists for it",
                )
    check.facts = {
        "invoked": len(invoked),
        **{kind: counts[kind] for kind in ("ok", "fail", "unknown")},
        "ok_became": dict(sorted(became["ok"].items())),
        "unknown_became": dict(sorted(became["unknown"].items())),
    }
    if client is None:
        check.facts["released keys"] = "not looked up in ticketing (no API key given)"
    return check


def _resolve(record: IdempotencyRecord | None, orders: dict[str, str]) -> str:
    if record is None:
        return NEVER_TOOK_EFFECT
    if record.by_request_key:
        return orders.get(record.order_id or "", MISSING)
    if record.status is None:
        return UNRESOLVED
    if record.order_id is None:
        return REFUSED
    return orders.get(record.order_id, MISSING)

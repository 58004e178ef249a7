"""What the customers lived through in a run: each purchase followed from the buyer's request
to its order's final state, split by when it was made (before the fault, during it, after the
heal), and how long after the heal purchases kept failing (a breaker still open, a backlog).

A purchase *failed for its customer* unless its order ended CONFIRMED: refused by the API (a
4xx), never answered (a timeout, a 5xx), or accepted and then PAYMENT_FAILED or EXPIRED. The
metrics a run moves (``provider-calls-fail-as-unavailable: +6``) count calls, not customers;
this counts customers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .history import Op

__all__ = ["Impact", "customer_impact"]

PHASES = ("before", "during", "after")


@dataclass
class Impact:
    purchases: int = 0
    failed: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_phase: dict[str, tuple[int, int]] = field(default_factory=dict)  # phase -> (failed, all)
    failing_after_heal_s: float | None = None  # the last failed purchase made after the heal

    def to_dict(self) -> dict[str, Any]:
        return {
            "purchases": self.purchases,
            "failed": self.failed,
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_phase": {p: {"failed": f, "all": n} for p, (f, n) in self.by_phase.items()},
            "failing_after_heal_s": self.failing_after_heal_s,
        }

    def render(self) -> str:
        phases = ", ".join(f"{p} {f} of {n}" for p, (f, n) in self.by_phase.items() if n)
        tail = (
            f"; purchases kept failing {self.failing_after_heal_s:.1f} s after the heal"
            if self.failing_after_heal_s
            else "; none failed after the heal"
        )
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(self.by_outcome.items()))
        return (
            f"{self.failed} of {self.purchases} purchases failed for their customer"
            f" ({phases}){tail}. Outcomes: {outcomes}"
        )


def customer_impact(
    ops: Iterable[Op],
    final_status: Mapping[str, str],
    injected: datetime | None,
    healed: datetime | None,
) -> Impact:
    """Each purchase's fate, from its ``invoke`` and completion and its order's final status."""
    invoked: dict[str, datetime] = {}
    completion: dict[str, Op] = {}
    for op in ops:
        if op.f != "purchase":
            continue
        if op.type == "invoke":
            invoked[op.key] = datetime.fromisoformat(op.time)
        else:
            completion[op.key] = op
    impact = Impact()
    counts = {phase: [0, 0] for phase in PHASES}
    last_failure: datetime | None = None
    for key, at in invoked.items():
        outcome = _outcome(completion.get(key), final_status)
        failed = outcome != "CONFIRMED"
        phase = _phase(at, injected, healed)
        impact.purchases += 1
        impact.by_outcome[outcome] += 1
        counts[phase][1] += 1
        if failed:
            impact.failed += 1
            counts[phase][0] += 1
            if phase == "after" and (last_failure is None or at > last_failure):
                last_failure = at
    impact.by_phase = {phase: (f, n) for phase, (f, n) in counts.items()}
    if last_failure is not None and healed is not None:
        impact.failing_after_heal_s = round((last_failure - healed).total_seconds(), 1)
    return impact


def _outcome(done: Op | None, final_status: Mapping[str, str]) -> str:
    if done is None:
        return "no answer recorded"
    if done.type == "fail":
        return f"refused {done.status}" if done.status else "refused"
    if done.type == "unknown":
        if done.order_id and done.order_id in final_status:
            return final_status[done.order_id]
        return "unanswered"
    return final_status.get(done.order_id or "", "order missing")


def _phase(at: datetime, injected: datetime | None, healed: datetime | None) -> str:
    if injected is None or at < injected:
        return "before"
    if healed is None or at < healed:
        return "during"
    return "after"

"""The chaos report's customer impact: purchases followed to their orders' final state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from safiri_chaos.history import Op
from safiri_chaos.impact import customer_impact

pytestmark = pytest.mark.unit
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
INJECTED, HEALED = T0 + timedelta(seconds=10), T0 + timedelta(seconds=40)


def purchase(n: int, at: float, done: str, order: str | None = None, status: int = 202) -> list[Op]:
    key, time = f"k{n}", (T0 + timedelta(seconds=at)).isoformat()
    return [
        Op("invoke", "p", key, time),
        Op(done, "p", key, time, order_id=order, status=status),  # type: ignore[arg-type]
    ]


def test_customers_are_counted_by_their_orders_final_state_and_phase() -> None:
    ops = [
        *purchase(1, 1, "ok", "o1"),  # before: confirmed
        *purchase(2, 15, "ok", "o2"),  # during: payment failed
        *purchase(3, 20, "fail", status=503),  # during: refused
        *purchase(4, 25, "unknown"),  # during: never answered, not resolved
        *purchase(5, 42, "ok", "o5"),  # after: still failing (the breaker open)
        *purchase(6, 44.5, "ok", "o6"),  # after: still failing
        *purchase(7, 50, "ok", "o7"),  # after: confirmed
    ]
    final = {"o1": "CONFIRMED", "o2": "PAYMENT_FAILED", "o5": "PAYMENT_FAILED"}
    final |= {"o6": "EXPIRED", "o7": "CONFIRMED"}
    impact = customer_impact(ops, final, INJECTED, HEALED)
    assert (impact.purchases, impact.failed) == (7, 5)
    assert impact.by_phase == {"before": (0, 1), "during": (3, 3), "after": (2, 3)}
    assert impact.failing_after_heal_s == 4.5
    assert impact.by_outcome["PAYMENT_FAILED"] == 2
    assert impact.by_outcome["refused 503"] == 1
    text = impact.render()
    assert text.startswith("5 of 7 purchases failed for their customer")
    assert "kept failing 4.5 s after the heal" in text


def test_an_accepted_purchase_whose_order_is_missing_is_a_failure_not_a_success() -> None:
    impact = customer_impact(purchase(1, 1, "ok", "gone"), {}, None, None)
    assert (impact.purchases, impact.failed) == (1, 1)
    assert impact.by_outcome == {"order missing": 1}
    assert impact.failing_after_heal_s is None


def test_no_purchases_is_said_as_such() -> None:
    impact = customer_impact([], {}, INJECTED, HEALED)
    assert (impact.purchases, impact.failed) == (0, 0)
    assert "0 of 0 purchases" in impact.render()

"""The order state machine, as a specification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from safiri_ticketing.domain.orders import InvalidTransition, Order, OrderStatus

pytestmark = pytest.mark.unit
NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)


def pending(**overrides: object) -> Order:
    fields: dict[str, object] = {
        "order_id": "o-1",
        "trip_id": "t-1",
        "seat_count": 2,
        "phone": "254712345678",
        "seats": [3, 4],
        "amount": 3000,
        "currency": "KES",
        "expires_at": NOW + timedelta(minutes=5),
        "created_at": NOW,
    }
    fields.update(overrides)
    return Order(**fields)  # type: ignore[arg-type]


def test_a_paid_order_is_confirmed_with_one_ticket_per_held_seat() -> None:
    order = pending()
    order.confirm("RCPT123", ["tk-a", "tk-b"])
    assert order.status is OrderStatus.CONFIRMED
    assert [(t.ticket_id, t.seat_no) for t in order.tickets] == [("tk-a", 3), ("tk-b", 4)]
    assert order.payment_receipt == "RCPT123"


def test_a_failed_payment_ends_the_order_with_its_reason() -> None:
    order = pending()
    order.fail("Request cancelled by user (ResultCode 1032)")
    assert order.status is OrderStatus.PAYMENT_FAILED
    assert order.failure_reason == "Request cancelled by user (ResultCode 1032)"


@pytest.mark.parametrize("end", ["confirm", "fail", "expire"])
def test_a_final_order_never_changes_again(end: str) -> None:
    order = pending(expires_at=NOW)
    order.fail("first")
    attempts = {
        "confirm": lambda: order.confirm(None, ["a", "b"]),
        "fail": lambda: order.fail("second"),
        "expire": lambda: order.expire(NOW),
    }
    with pytest.raises(InvalidTransition):
        attempts[end]()
    assert order.failure_reason == "first"


def test_a_hold_cannot_expire_before_its_time() -> None:
    order = pending()
    with pytest.raises(InvalidTransition):
        order.expire(NOW)
    order.expire(NOW + timedelta(minutes=5))
    assert order.status is OrderStatus.EXPIRED


def test_only_pending_payment_is_not_final() -> None:
    assert [s for s in OrderStatus if not s.is_final] == [OrderStatus.PENDING_PAYMENT]

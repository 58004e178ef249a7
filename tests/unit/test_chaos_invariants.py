"""The invariant checker on in-memory snapshots: a clean run passes, each violation is named."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from safiri_chaos.history import Op, OpType
from safiri_chaos.invariants import (
    IdempotencyRecord,
    LedgerEntry,
    Limits,
    OrderRow,
    OutboxRow,
    PaymentRow,
    SeatClaim,
    Snapshot,
    TripSeats,
    check,
)
from safiri_chaos.invariants.operations import client_id, request_key

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TRIP = "11111111-1111-1111-1111-111111111111"
LIMITS = Limits(hold_ttl_seconds=300, final_grace_seconds=30, settle_bound_seconds=60)


def order_id(n: int) -> str:
    return f"{n:08d}-aaaa-bbbb-cccc-000000000000"


def order(n: int, status: str, age: float = 60, took: float = 1, amount: int = 1500) -> OrderRow:
    created = NOW - timedelta(seconds=age)
    return OrderRow(
        order_id(n),
        TRIP,
        status,
        amount,
        created_at=created,
        updated_at=created + timedelta(seconds=took),
        expires_at=created + timedelta(seconds=300),
    )


def charge(n: int, amount: int = 1500, receipt: str = "R1") -> LedgerEntry:
    return LedgerEntry(f"ws_CO_{n}", order_id(n)[:12], amount, "completed", 0, receipt)


def clean() -> Snapshot:
    """A trip of 4 seats: seat 1 sold (order 1), seat 2 held (order 2), order 3 failed."""
    return Snapshot(
        taken_at=NOW,
        trips=[TripSeats(TRIP, capacity=4, seat_rows=4)],
        allocations=[
            SeatClaim(TRIP, 1, order_id(1), sold=True),
            SeatClaim(TRIP, 2, order_id(2), sold=False),
        ],
        tickets=[SeatClaim(TRIP, 1, order_id(1))],
        orders=[
            order(1, "CONFIRMED"),
            order(2, "PENDING_PAYMENT", age=10),
            order(3, "PAYMENT_FAILED"),
        ],
        payments=[
            PaymentRow("p1", order_id(1), "SUCCEEDED", 1500),
            PaymentRow("p2", order_id(2), "AWAITING_CALLBACK", 1500),
            PaymentRow("p3", order_id(3), "FAILED", 1500),
        ],
        ledger=[
            charge(1),
            LedgerEntry("ws_CO_2", order_id(2)[:12], 1500, "pending", None),
            LedgerEntry("ws_CO_3", order_id(3)[:12], 1500, "completed", 1032),
        ],
        dead_letters={"payment.requests.dlq": 0, "ticketing.payment-results.dlq": 0},
    )


def violations(
    snapshot: Snapshot, limits: Limits = LIMITS, ops: list[Op] | None = None
) -> set[str]:
    return {v.invariant for v in check(snapshot, limits, ops).violations}


def test_a_clean_run_passes() -> None:
    report = check(clean(), LIMITS, [])
    assert report.ok, report.render()
    assert report.check("held + sold + free = capacity").facts["held"] == 1
    assert report.check("every accepted order final in time").facts["in_flight"] == 1
    assert "HOLD" in report.render()
    assert report.to_dict()["violations"] == 0


def test_a_seat_sold_twice_is_named() -> None:
    snapshot = clean()
    snapshot.orders.append(order(4, "CONFIRMED"))
    snapshot.tickets.append(SeatClaim(TRIP, 1, order_id(4)))
    assert "seat sold twice" in violations(snapshot)


def test_a_seat_allocated_twice_is_named() -> None:
    snapshot = clean()
    snapshot.allocations.append(SeatClaim(TRIP, 2, order_id(3), sold=False))
    assert "seat allocated twice" in violations(snapshot)


def test_a_seat_left_allocated_to_a_failed_order_breaks_the_seat_sum() -> None:
    snapshot = clean()
    snapshot.allocations.append(SeatClaim(TRIP, 3, order_id(3), sold=False))
    report = check(snapshot, LIMITS)
    [violation] = report.violations
    assert violation.invariant == "held + sold + free ≠ capacity"
    assert "held 1 + sold 1 + free 1 = 3, capacity 4" in violation.detail


def test_a_ticket_without_its_allocation_breaks_the_seat_sum() -> None:
    snapshot = clean()
    snapshot.allocations = [a for a in snapshot.allocations if a.sold is False]
    assert violations(snapshot) == {"held + sold + free ≠ capacity"}


def test_an_order_pending_past_its_hold_and_grace_is_a_violation() -> None:
    snapshot = clean()
    snapshot.orders[1] = order(2, "PENDING_PAYMENT", age=331)
    assert violations(snapshot) == {"order not final in time"}


def test_a_pending_order_within_its_bound_is_in_flight_not_a_violation() -> None:
    snapshot = clean()
    snapshot.orders[1] = order(2, "PENDING_PAYMENT", age=329)
    assert violations(snapshot) == set()


def test_an_order_placed_during_the_fault_has_until_the_heal_plus_the_bound() -> None:
    snapshot = clean()
    healed = NOW - timedelta(seconds=50)
    ttl = Limits(hold_ttl_seconds=5, final_grace_seconds=5, settle_bound_seconds=60)
    snapshot.orders[1] = order(2, "PENDING_PAYMENT", age=100)
    assert violations(snapshot, replace(ttl, healed_at=healed)) == set()
    assert violations(snapshot, replace(ttl, healed_at=healed - timedelta(seconds=11))) == {
        "order not final in time"
    }


def test_an_order_that_ended_too_late_is_a_violation() -> None:
    snapshot = clean()
    snapshot.orders[2] = order(3, "PAYMENT_FAILED", age=400, took=340)
    assert violations(snapshot) == {"order final too late"}


def test_the_time_orders_took_after_the_heal_is_reported() -> None:
    snapshot = clean()
    healed = NOW - timedelta(seconds=100)
    snapshot.orders[2] = order(3, "PAYMENT_FAILED", age=120, took=35)
    report = check(snapshot, replace(LIMITS, healed_at=healed))
    assert report.check("every accepted order final in time").facts[
        "last_final_after_heal_s"
    ] == pytest.approx(15.0)


def test_two_successful_payments_for_one_order_are_a_violation() -> None:
    snapshot = clean()
    snapshot.payments.append(PaymentRow("p4", order_id(1), "SUCCEEDED", 1500))
    assert violations(snapshot) == {"order paid twice"}


def test_a_succeeded_payment_for_an_expired_order_is_a_violation() -> None:
    snapshot = clean()
    snapshot.orders[2] = order(3, "EXPIRED")
    snapshot.payments[2] = PaymentRow("p3", order_id(3), "SUCCEEDED", 1500)
    assert "payment without confirmed order" in violations(snapshot)


def test_a_charge_for_an_expired_order_with_its_refund_recorded_is_accounted_for() -> None:
    snapshot = clean()
    assert snapshot.ledger is not None
    snapshot.orders[2] = order(3, "EXPIRED")
    snapshot.payments[2] = PaymentRow("p3", order_id(3), "SUCCEEDED", 1500)
    snapshot.ledger.append(charge(3))
    snapshot.refunds[order_id(3)] = 1500
    assert violations(snapshot) == set()


def test_a_refund_of_another_amount_than_the_charge_is_a_violation() -> None:
    snapshot = clean()
    assert snapshot.ledger is not None
    snapshot.orders[2] = order(3, "EXPIRED")
    snapshot.payments[2] = PaymentRow("p3", order_id(3), "SUCCEEDED", 1500)
    snapshot.ledger.append(charge(3))
    snapshot.refunds[order_id(3)] = 100
    assert violations(snapshot) == {"refund differs from the charge"}


def test_tickets_without_a_successful_payment_are_a_violation() -> None:
    snapshot = clean()
    snapshot.payments[0] = PaymentRow("p1", order_id(1), "UNKNOWN", 1500)
    assert violations(snapshot) == {"tickets without payment"}


def test_two_charges_in_the_ledger_for_one_order_are_a_double_charge() -> None:
    snapshot = clean()
    assert snapshot.ledger is not None
    snapshot.ledger.append(charge(1, receipt="R2"))
    assert violations(snapshot) == {"order charged twice"}


def test_a_charge_for_an_order_that_did_not_confirm_is_money_without_tickets() -> None:
    snapshot = clean()
    assert snapshot.ledger is not None
    snapshot.ledger.append(charge(3))
    [violation] = check(snapshot, LIMITS).violations
    assert violation.invariant == "charge without confirmed order"
    assert "PAYMENT_FAILED" in violation.detail


def test_a_charge_for_no_order_at_all_is_a_violation() -> None:
    snapshot = clean()
    assert snapshot.ledger is not None
    snapshot.ledger.append(charge(99))
    assert violations(snapshot) == {"charge without confirmed order"}


def test_a_charge_of_another_amount_than_the_order_is_a_violation() -> None:
    snapshot = clean()
    snapshot.ledger = [charge(1, amount=1)]
    assert violations(snapshot) == {"charge amount differs from order"}


def test_unpaid_pushes_and_failed_results_are_no_charge() -> None:
    report = check(clean(), LIMITS)
    facts = report.check("the ledger and the confirmed orders agree, both ways").facts
    assert facts == {"pushes": 3, "charged": 1, "failed": 1, "never settled": 1}


def test_without_a_ledger_the_money_check_says_so() -> None:
    snapshot = clean()
    snapshot.ledger = None
    report = check(snapshot, LIMITS)
    assert report.ok
    assert report.check("the ledger and the confirmed orders agree, both ways").facts == {
        "ledger": "not read"
    }


def test_an_event_left_in_an_outbox_past_the_limit_is_a_violation() -> None:
    snapshot = clean()
    snapshot.outbox = [
        OutboxRow("ticketing", "m1", "payment.requested", 5),
        OutboxRow("payment", "m2", "payment.succeeded", 45),
    ]
    report = check(snapshot, LIMITS)
    assert [v.subject for v in report.violations] == ["payment outbox m2"]
    assert report.check("outboxes drained").facts["unpublished"] == {"ticketing": 1, "payment": 1}


def test_dead_lettered_messages_are_listed_and_count_unless_allowed() -> None:
    snapshot = clean()
    snapshot.dead_letters = {"payment.requests.dlq": 2, "ticketing.payment-results.dlq": None}
    report = check(snapshot, LIMITS)
    assert violations(snapshot) == {"messages dead-lettered"}
    assert report.check("dead letters accounted for").facts == {
        "payment.requests.dlq": 2,
        "ticketing.payment-results.dlq": "not declared",
    }
    assert violations(snapshot, replace(LIMITS, allow_dead_letters=True)) == set()


def op(
    kind: OpType,
    key: str,
    order_id: str | None = None,
    status: int | None = None,
    error: str | None = None,
) -> Op:
    return Op(kind, "load-1", key, NOW.isoformat(), order_id=order_id, status=status, error=error)


def test_an_unknown_purchase_is_resolved_never_counted_as_failed() -> None:
    snapshot = clean()
    snapshot.idempotency = {
        "k2": IdempotencyRecord("k2", 202, order_id(3)),
        "k4": IdempotencyRecord("k4", None, None),
        "k5": IdempotencyRecord("k5", 409, None),
    }
    ops = [
        op("invoke", "k1"),
        op("ok", "k1", order_id=order_id(1)),
        op("invoke", "k2"),
        op("unknown", "k2", error="TimeoutError()"),
        op("invoke", "k3"),
        op("unknown", "k3", status=503),
        op("invoke", "k4"),  # never completed: the recorder stopped
        op("invoke", "k5"),
        op("unknown", "k5", status=502),
        op("invoke", "k6"),
        op("fail", "k6", status=409),
    ]
    report = check(snapshot, LIMITS, ops)
    assert report.ok, report.render()
    facts = report.check("recorded operations accounted for").facts
    assert facts["invoked"] == 6
    assert (facts["ok"], facts["fail"], facts["unknown"]) == (1, 1, 4)
    assert facts["ok_became"] == {"CONFIRMED": 1}
    assert facts["unknown_became"] == {
        "PAYMENT_FAILED": 1,
        "never took effect": 1,
        "unresolved": 1,
        "refused": 1,
    }


def test_an_acknowledged_order_that_is_not_in_the_database_is_lost() -> None:
    ops = [op("invoke", "k1"), op("ok", "k1", order_id=order_id(42))]
    assert violations(clean(), ops=ops) == {"acknowledged order lost"}


def test_a_failed_purchase_that_took_effect_is_a_violation() -> None:
    snapshot = clean()
    snapshot.idempotency = {"k1": IdempotencyRecord("k1", 202, order_id(1))}
    ops = [op("invoke", "k1"), op("fail", "k1", status=409)]
    assert violations(snapshot, ops=ops) == {"failed purchase took effect"}


def test_the_report_lists_violations_for_a_person_and_all_of_them_in_json() -> None:
    snapshot = clean()
    snapshot.orders += [order(10 + n, "PENDING_PAYMENT", age=1000) for n in range(12)]
    report = check(snapshot, LIMITS)
    text = report.render(max_listed=10)
    assert "VIOLATED (12 violations)" in text
    assert "… and 2 more (--json lists all)" in text
    assert len(report.check("every accepted order final in time").violations) == 12
    assert len(report.to_dict()["checks"][3]["violations"]) == 12


# ---- the ledger both ways --------------------------------------------------------------------


def test_a_confirmed_order_with_a_payment_row_but_no_charge_is_a_free_ticket() -> None:
    """What the payments table alone cannot show: Safiri believes it was paid, the provider
    never took the money."""
    snapshot = clean()
    snapshot.ledger = [e for e in snapshot.ledger or [] if e.account_reference != order_id(1)[:12]]
    assert violations(snapshot) == {"confirmed order without a charge"}
    assert violations(replace(snapshot, ledger=[])) == {"confirmed order without a charge"}


def test_an_order_charged_twice_is_a_violation_even_with_one_payment_row() -> None:
    snapshot = clean()
    snapshot.ledger = [*(snapshot.ledger or []), charge(1, receipt="R2")]
    assert violations(snapshot) == {"order charged twice"}


def test_orders_before_the_ledger_began_are_stated_and_fail_only_in_chaos_mode() -> None:
    snapshot = clean()
    snapshot.ledger = []
    snapshot.ledger_since = NOW - timedelta(seconds=5)  # the simulator restarted, memory only
    report = check(snapshot, LIMITS)
    assert report.ok, report.render()
    facts = report.check("the ledger and the confirmed orders agree, both ways").facts
    assert facts["confirmed before the ledger began (not checked)"] == 1
    strict = replace(LIMITS, strict=True)
    assert violations(snapshot, strict, ops=[]) == {"ledger does not cover the orders"}


# ---- nothing to check is not a pass in chaos mode ----------------------------------------------

STRICT = replace(LIMITS, strict=True)


def test_a_clean_run_passes_in_chaos_mode_too() -> None:
    report = check(clean(), STRICT, [])
    assert report.ok, report.render()


def test_an_empty_snapshot_fails_in_chaos_mode() -> None:
    empty = Snapshot(taken_at=NOW, ledger=[], dead_letters=clean().dead_letters)
    assert check(empty, LIMITS, []).ok  # `safiri chaos check` on a fresh suite: fine
    assert violations(empty, STRICT, ops=[]) == {"empty snapshot"}
    no_orders = replace(empty, trips=clean().trips)
    assert violations(no_orders, STRICT, ops=[]) == {"empty snapshot"}


def test_an_unread_ledger_fails_in_chaos_mode() -> None:
    assert violations(replace(clean(), ledger=None), STRICT, ops=[]) == {"ledger not read"}


def test_a_missing_or_unread_dead_letter_queue_fails_in_chaos_mode() -> None:
    missing = replace(clean(), dead_letters={"payment.requests.dlq": 0, "x.dlq": None})
    assert violations(missing, STRICT, ops=[]) == {"dead-letter queue missing"}
    unread = replace(clean(), dead_letters={})
    assert violations(unread, STRICT, ops=[]) == {"dead-letter queues not read"}


def test_a_missing_history_fails_in_chaos_mode() -> None:
    assert violations(clean(), STRICT, ops=None) == {"no recorded history"}


# ---- purchases the gateway released, found through ticketing's request key ---------------------

API_KEY = "sk_test_key"


def test_an_unknown_purchase_released_by_the_gateway_is_found_in_ticketing() -> None:
    """A gateway timeout releases the key (so the client may retry), but ticketing may have
    created the order: it is found by the request key the gateway passed on."""
    client = client_id(API_KEY)
    snapshot = clean()
    snapshot.request_keys = {request_key(client, "k1"): order_id(1)}
    ops = [op("invoke", "k1"), op("unknown", "k1", status=503)]
    report = check(snapshot, LIMITS, ops, client)
    assert report.ok, report.render()
    facts = report.check("recorded operations accounted for").facts
    assert facts["unknown_became"] == {"CONFIRMED": 1}
    # Without the client the same purchase is (wrongly) believed never to have happened:
    unresolved = check(snapshot, LIMITS, ops).check("recorded operations accounted for").facts
    assert unresolved["unknown_became"] == {"never took effect": 1}
    assert "no API key" in unresolved["released keys"]


def test_a_refused_purchase_that_ticketing_created_anyway_took_effect() -> None:
    client = client_id(API_KEY)
    snapshot = clean()
    snapshot.request_keys = {request_key(client, "k9"): order_id(1)}
    ops = [op("invoke", "k9"), op("fail", "k9", status=409)]
    assert {v.invariant for v in check(snapshot, LIMITS, ops, client).violations} == {
        "failed purchase took effect"
    }


def test_the_request_key_is_derived_as_the_gateway_derives_it() -> None:
    """The checker may not import the gateway (an operator tool); it keeps the contract's
    derivation, and this test holds the two together."""
    from safiri_gateway.entrypoints.auth import client_id as gateway_client_id
    from safiri_gateway.service_layer.place_order import request_key as gateway_request_key

    assert client_id(API_KEY) == gateway_client_id(API_KEY)
    assert request_key("c", "k") == gateway_request_key("c", "k")

"""The invariant checker's report, exactly: what `make mutation` showed the first tests let pass.

tests/unit/test_chaos_invariants.py shows each invariant failing by name; mutmut showed that a
checker naming the wrong order, reporting wrong numbers, moving a bound by one tick or counting
once where it should add would still pass them. Each test here kills such mutants
(docs/mutation.md lists them, and the ones left alive with the reason).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest

from safiri_chaos.invariants import (
    IdempotencyRecord,
    LedgerEntry,
    Limits,
    OutboxRow,
    PaymentRow,
    SeatClaim,
    Snapshot,
    TripSeats,
    check,
)
from tests.unit.test_chaos_invariants import (
    LIMITS,
    NOW,
    STRICT,
    TRIP,
    charge,
    clean,
    op,
    order,
    order_id,
)

pytestmark = pytest.mark.unit

O1, O2, O3, O42 = order_id(1), order_id(2), order_id(3), order_id(42)


def _emptied(s: Snapshot, *, keep_trips: bool) -> None:
    for rows in (s.orders, s.payments, s.allocations, s.tickets, s.ledger or []):
        rows.clear()
    if not keep_trips:
        s.trips.clear()


def _seat_sold_twice(s: Snapshot) -> None:
    s.orders.append(order(4, "CONFIRMED"))
    s.tickets.append(SeatClaim(TRIP, 1, order_id(4)))
    s.payments.append(PaymentRow("p4", order_id(4), "SUCCEEDED", 1500))
    s.ledger = [*(s.ledger or []), charge(4)]


def _charged_twice_one_receipt_missing(s: Snapshot) -> None:
    s.ledger = [*(s.ledger or []), LedgerEntry("ws_CO_1b", O1[:12], 1500, "completed", 0)]


def _charge_for_two_unconfirmed_orders(s: Snapshot) -> None:
    twin = replace(order(3, "EXPIRED"), order_id=O3[:12] + "-bbbb-cccc-999999999999")
    s.orders.append(twin)
    s.ledger = [*(s.ledger or []), charge(3)]


def _refund_of_another_amount(s: Snapshot) -> None:
    s.orders[2] = order(3, "EXPIRED")
    s.payments[2] = PaymentRow("p3", O3, "SUCCEEDED", 1500)
    s.ledger = [*(s.ledger or []), charge(3)]
    s.refunds[O3] = 100


def _succeeded_payments(s: Snapshot, order_ids: list[str]) -> None:
    s.payments += [PaymentRow(f"p-{i}", i, "SUCCEEDED", 1500) for i in order_ids]


# (what is broken, how, the limits, the recorded history) -> every violation, exactly.
BROKEN = {
    "no trip": (
        lambda s: _emptied(s, keep_trips=False),
        STRICT,
        [],
        [("empty snapshot", "ticketing's database", "no trip: is this the suite?")],
    ),
    "no order": (
        lambda s: _emptied(s, keep_trips=True),
        STRICT,
        [],
        [("empty snapshot", "ticketing's database", "no order was ever placed")],
    ),
    "no history": (
        lambda s: None,
        STRICT,
        None,
        [("no recorded history", "history.jsonl", "the purchases were not recorded")],
    ),
    "seat sold twice": (
        _seat_sold_twice,
        LIMITS,
        [],
        [("seat sold twice", f"trip {TRIP} seat 1", f"tickets of orders {[O1, order_id(4)]}")],
    ),
    "seat allocated twice": (
        lambda s: s.allocations.append(SeatClaim(TRIP, 2, O3, sold=False)),
        LIMITS,
        [],
        [("seat allocated twice", f"trip {TRIP} seat 2", f"allocations of orders {[O2, O3]}")],
    ),
    "seat sum short": (
        lambda s: s.allocations.append(SeatClaim(TRIP, 3, O3, sold=False)),
        LIMITS,
        [],
        [
            (
                "held + sold + free ≠ capacity",
                f"trip {TRIP}",
                "held 1 + sold 1 + free 1 = 3, capacity 4",
            )
        ],
    ),
    "pending past its bound": (
        lambda s: s.orders.__setitem__(1, order(2, "PENDING_PAYMENT", age=331)),
        LIMITS,
        [],
        [
            (
                "order not final in time",
                f"order {O2}",
                "still PENDING_PAYMENT 1.0 s past its bound (11:59:59)",
            )
        ],
    ),
    "final too late": (
        lambda s: s.orders.__setitem__(2, order(3, "PAYMENT_FAILED", age=400, took=340)),
        LIMITS,
        [],
        [("order final too late", f"order {O3}", "PAYMENT_FAILED 10.0 s past its bound")],
    ),
    "paid twice": (
        lambda s: _succeeded_payments(s, [O1]),
        LIMITS,
        [],
        [("order paid twice", f"order {O1}", "2 successful payments")],
    ),
    "payment for an expired order": (
        lambda s: (s.orders.__setitem__(2, order(3, "EXPIRED")), _succeeded_payments(s, [O3])),
        LIMITS,
        [],
        [
            (
                "payment without confirmed order",
                f"order {O3}",
                "the payment succeeded, the order is EXPIRED",
            )
        ],
    ),
    "payment for no order": (
        lambda s: _succeeded_payments(s, [O42]),
        LIMITS,
        [],
        [
            (
                "payment without confirmed order",
                f"order {O42}",
                "the payment succeeded, the order is missing",
            )
        ],
    ),
    "tickets without payment": (
        lambda s: s.payments.__setitem__(0, PaymentRow("p1", O1, "UNKNOWN", 1500)),
        LIMITS,
        [],
        [("tickets without payment", f"order {O1}", "no successful payment")],
    ),
    "ledger not read": (
        lambda s: setattr(s, "ledger", None),
        STRICT,
        [],
        [
            (
                "ledger not read",
                "the provider's ledger",
                "without it nothing shows whether money was taken, or taken once",
            )
        ],
    ),
    "charged twice": (
        _charged_twice_one_receipt_missing,
        LIMITS,
        [],
        [("order charged twice", f"account reference {O1[:12]}", "charges R1, ws_CO_1b")],
    ),
    "refund differs": (
        _refund_of_another_amount,
        LIMITS,
        [],
        [("refund differs from the charge", f"order {O3}", "charged 1500, refund 100")],
    ),
    "charge for unconfirmed orders": (
        _charge_for_two_unconfirmed_orders,
        LIMITS,
        [],
        [
            (
                "charge without confirmed order",
                f"account reference {O3[:12]}",
                f"charge R1 of 1500; order: {O3} PAYMENT_FAILED,"
                f" {O3[:12]}-bbbb-cccc-999999999999 EXPIRED (no refund recorded)",
            )
        ],
    ),
    "charge for no order": (
        lambda s: s.ledger.append(charge(99)) if s.ledger is not None else None,
        LIMITS,
        [],
        [
            (
                "charge without confirmed order",
                f"account reference {order_id(99)[:12]}",
                "charge R1 of 1500; order: none (no refund recorded)",
            )
        ],
    ),
    "charge of another amount": (
        lambda s: setattr(s, "ledger", [charge(1, amount=1)]),
        LIMITS,
        [],
        [("charge amount differs from order", f"order {O1}", "charged 1, order amount 1500")],
    ),
    "free ticket": (
        lambda s: setattr(s, "ledger", []),
        LIMITS,
        [],
        [
            (
                "confirmed order without a charge",
                f"order {O1}",
                "CONFIRMED for 1500, but the provider holds no charge for it (a free ticket)",
            )
        ],
    ),
    "ledger began after the orders": (
        lambda s: (
            setattr(s, "ledger", []),
            setattr(s, "ledger_since", NOW - timedelta(seconds=5)),
        ),
        STRICT,
        [],
        [
            (
                "ledger does not cover the orders",
                f"1 confirmed order(s), e.g. {O1}",
                "created before the ledger began (11:59:55): the simulator restarted without its"
                " journal (SAFIRI_MPESA_SIM_LEDGER_PATH)",
            )
        ],
    ),
    "event not published": (
        lambda s: setattr(s, "outbox", [OutboxRow("payment", "m2", "payment.succeeded", 45)]),
        LIMITS,
        [],
        [
            (
                "event not published",
                "payment outbox m2",
                "payment.succeeded unpublished for 45 s (limit 30 s)",
            )
        ],
    ),
    "dead letters not read": (
        lambda s: s.dead_letters.clear(),
        STRICT,
        [],
        [("dead-letter queues not read", "the broker", "no queue depth was read")],
    ),
    "dead-letter queue missing": (
        lambda s: s.dead_letters.__setitem__("x.dlq", None),
        STRICT,
        [],
        [
            (
                "dead-letter queue missing",
                "x.dlq",
                "not declared on the broker: a message dead-lettered now would be dropped",
            )
        ],
    ),
    "messages dead-lettered": (
        lambda s: s.dead_letters.__setitem__("payment.requests.dlq", 2),
        LIMITS,
        [],
        [
            (
                "messages dead-lettered",
                "payment.requests.dlq",
                "2 message(s) parked; inspect and replay them"
                " (docs/runbooks/SafiriMessagesDeadLettered.md)",
            )
        ],
    ),
    "acknowledged order lost": (
        lambda s: None,
        LIMITS,
        [op("invoke", "k1"), op("ok", "k1", order_id=O42)],
        [("acknowledged order lost", f"order {O42}", "answered 202 for key k1")],
    ),
    "order the gateway answered lost": (
        lambda s: s.idempotency.__setitem__("k1", IdempotencyRecord("k1", 202, O42)),
        LIMITS,
        [op("invoke", "k1"), op("unknown", "k1", error="TimeoutError()")],
        [
            (
                "acknowledged order lost",
                f"order {O42}",
                "the gateway answered it for key k1; ticketing has no such order",
            )
        ],
    ),
    "failed purchase took effect": (
        lambda s: s.idempotency.__setitem__("k1", IdempotencyRecord("k1", 202, O1)),
        LIMITS,
        [op("invoke", "k1"), op("fail", "k1", status=409)],
        [
            (
                "failed purchase took effect",
                f"order {O1}",
                "answered 409 for key k1, but an order exists for it",
            )
        ],
    ),
}


@pytest.mark.parametrize("broken", BROKEN, ids=str)
def test_each_violation_names_its_subject_and_its_numbers(broken: str) -> None:
    breaks, limits, ops, expected = BROKEN[broken]
    snapshot = clean()
    breaks(snapshot)
    found = [(v.invariant, v.subject, v.detail) for v in check(snapshot, limits, ops).violations]
    assert found == expected


def test_the_json_report_of_a_clean_run_names_every_check_and_its_numbers() -> None:
    report = check(clean(), LIMITS, [])
    assert json.loads(report.to_json()) == report.to_dict()
    assert report.to_dict() == {
        "ok": True,
        "taken_at": "2026-11-25T12:00:00+00:00",
        "violations": 0,
        "checks": [
            {"name": name, "ok": True, "facts": facts, "violations": []}
            for name, facts in [
                ("there is something to check", {"trips": 1, "orders": 3}),
                ("no seat sold twice", {"tickets": 1, "allocations": 2}),
                (
                    "held + sold + free = capacity",
                    {"trips": 1, "held": 1, "sold": 1, "free": 2, "capacity": 4},
                ),
                (
                    "every accepted order final in time",
                    {
                        "orders": 3,
                        "by_status": {"CONFIRMED": 1, "PAYMENT_FAILED": 1, "PENDING_PAYMENT": 1},
                        "in_flight": 1,
                    },
                ),
                (
                    "at most one successful payment per order",
                    {
                        "payments": {"AWAITING_CALLBACK": 1, "FAILED": 1, "SUCCEEDED": 1},
                        "refunds": 0,
                    },
                ),
                (
                    "the ledger and the confirmed orders agree, both ways",
                    {"pushes": 3, "charged": 1, "failed": 1, "never settled": 1},
                ),
                ("outboxes drained", {"unpublished": 0}),
                (
                    "dead letters accounted for",
                    {"payment.requests.dlq": 0, "ticketing.payment-results.dlq": 0},
                ),
                (
                    "recorded operations accounted for",
                    {
                        "invoked": 0,
                        "ok": 0,
                        "fail": 0,
                        "unknown": 0,
                        "ok_became": {},
                        "unknown_became": {},
                        "released keys": "not looked up in ticketing (no API key given)",
                    },
                ),
            ]
        ],
    }


def test_the_report_for_a_person_lists_each_check_its_numbers_and_its_violations() -> None:
    snapshot = clean()
    snapshot.outbox = [OutboxRow("payment", "m2", "payment.succeeded", 45)]
    snapshot.refunds = {O42: 10}
    report = check(snapshot, replace(LIMITS, healed_at=NOW - timedelta(seconds=30)))
    assert report.render().splitlines() == [
        "invariants VIOLATED (1 violations) — snapshot at 2026-11-25 12:00:00 UTC",
        "  ✓ there is something to check  (trips 1, orders 3)",
        "  ✓ no seat sold twice  (tickets 1, allocations 2)",
        "  ✓ held + sold + free = capacity  (trips 1, held 1, sold 1, free 2, capacity 4)",
        "  ✓ every accepted order final in time  (orders 3, by_status {CONFIRMED: 1,"
        " PAYMENT_FAILED: 1, PENDING_PAYMENT: 1}, in_flight 1, last_final_after_heal_s 0.0)",
        "  ✓ at most one successful payment per order  (payments {AWAITING_CALLBACK: 1,"
        " FAILED: 1, SUCCEEDED: 1}, refunds 1)",
        "  ✓ the ledger and the confirmed orders agree, both ways  (pushes 3, charged 1,"
        " failed 1, never settled 1)",
        "  ✗ outboxes drained  (unpublished {payment: 1})",
        "      event not published: payment outbox m2 — payment.succeeded unpublished for 45 s"
        " (limit 30 s)",
        "  ✓ dead letters accounted for  (payment.requests.dlq 0, ticketing.payment-results.dlq 0)",
    ]


def test_a_clean_report_says_hold_and_a_check_without_numbers_shows_none() -> None:
    report = check(replace(clean(), dead_letters={}), LIMITS)
    lines = report.render().splitlines()
    assert lines[0] == "invariants HOLD — snapshot at 2026-11-25 12:00:00 UTC"
    assert lines[-1] == "  ✓ dead letters accounted for"


@pytest.mark.parametrize(
    ("pending", "more"), [(10, None), (11, "      … and 1 more (--json lists all)")]
)
def test_a_person_sees_ten_violations_of_a_check_and_how_many_more(
    pending: int, more: str | None
) -> None:
    snapshot = clean()
    snapshot.orders += [order(10 + n, "PENDING_PAYMENT", age=1000) for n in range(pending)]
    lines = check(snapshot, LIMITS).render().splitlines()
    listed = [ln for ln in lines if ln.startswith("      order not final in time")]
    assert len(listed) == 10
    assert [ln for ln in lines if "more (--json" in ln] == ([more] if more else [])


# ---- bounds: on the bound is still in time ----------------------------------------------------


def test_an_order_pending_exactly_at_its_bound_is_in_flight_not_late() -> None:
    snapshot = clean()
    snapshot.orders[1] = order(2, "PENDING_PAYMENT", age=330)
    report = check(snapshot, LIMITS)
    assert report.ok, report.render()
    assert report.check("every accepted order final in time").facts["in_flight"] == 1


def test_an_order_final_exactly_at_its_bound_is_in_time() -> None:
    snapshot = clean()
    snapshot.orders[2] = order(3, "PAYMENT_FAILED", age=400, took=330)
    assert check(snapshot, LIMITS).ok


def test_an_order_placed_at_the_instant_of_the_heal_has_the_settle_bound() -> None:
    healed = NOW - timedelta(seconds=30)
    limits = Limits(hold_ttl_seconds=5, final_grace_seconds=5, healed_at=healed)
    snapshot = clean()
    snapshot.orders[1] = order(2, "PENDING_PAYMENT", age=30)  # created as the fault healed
    snapshot.orders[2] = replace(
        order(3, "PAYMENT_FAILED", age=30, took=12.34), updated_at=healed + timedelta(seconds=12.34)
    )
    report = check(snapshot, limits)
    assert report.ok, report.render()
    facts = report.check("every accepted order final in time").facts
    assert facts["in_flight"] == 1
    assert facts["last_final_after_heal_s"] == 12.3


def test_an_order_final_before_the_heal_took_no_time_after_it() -> None:
    snapshot = clean()
    report = check(snapshot, replace(LIMITS, healed_at=NOW))
    facts = report.check("every accepted order final in time").facts
    assert facts["last_final_after_heal_s"] == 0.0


def test_an_event_exactly_as_old_as_the_limit_is_not_yet_late() -> None:
    snapshot = clean()
    snapshot.outbox = [OutboxRow("ticketing", f"m{n}", "payment.requested", 30) for n in (1, 2)]
    report = check(snapshot, LIMITS)
    assert report.ok, report.render()
    assert report.check("outboxes drained").facts == {"unpublished": {"ticketing": 2}}


def test_an_order_created_the_instant_the_ledger_began_is_checked_against_it() -> None:
    snapshot = clean()
    snapshot.ledger_since, snapshot.ledger_durable = snapshot.orders[0].created_at, True
    report = check(snapshot, STRICT, [])
    assert report.ok, report.render()
    assert report.check("the ledger and the confirmed orders agree, both ways").facts == {
        "pushes": 3,
        "charged": 1,
        "failed": 1,
        "never settled": 1,
        "since": "2026-11-25 11:59:00",
        "durable": True,
    }


# ---- every item counted, none skipped ----------------------------------------------------------


def test_a_free_ticket_is_found_after_an_order_that_is_not_confirmed() -> None:
    snapshot = clean()
    failed_first = [snapshot.orders[2], snapshot.orders[0], snapshot.orders[1]]
    snapshot.orders = failed_first
    snapshot.ledger = [e for e in snapshot.ledger or [] if e.account_reference != O1[:12]]
    assert [v.invariant for v in check(snapshot, LIMITS).violations] == [
        "confirmed order without a charge"
    ]


def test_a_late_payment_owed_back_does_not_hide_the_orders_after_it() -> None:
    snapshot = clean()
    snapshot.orders[2] = order(3, "EXPIRED")
    snapshot.orders.append(order(5, "EXPIRED"))
    _succeeded_payments(snapshot, [O3, order_id(5), O42])
    snapshot.refunds = {O3: 1500, O42: 1500}  # 42: owed back, though its order is not in view
    assert [v.subject for v in check(snapshot, LIMITS).violations] == [f"order {order_id(5)}"]


def test_pushes_never_settled_and_failed_are_counted_apart() -> None:
    snapshot = clean()
    snapshot.ledger = [
        *(snapshot.ledger or []),
        LedgerEntry("ws_CO_9", order_id(9)[:12], 1500, "pending", None),
    ]
    facts = check(snapshot, LIMITS).check("the ledger and the confirmed orders agree, both ways")
    assert facts.facts == {"pushes": 4, "charged": 1, "failed": 1, "never settled": 2}


def test_pushes_through_a_second_provider_are_counted_by_provider() -> None:
    """With a second provider in use (the payment route switch), the ledger check says how many
    pushes went to each; with M-Pesa alone it says nothing more than before."""
    snapshot = clean()
    snapshot.ledger = [
        *(snapshot.ledger or []),
        LedgerEntry("fb_1", order_id(9)[:12], 1500, "pending", None, provider="fallback"),
    ]
    name = "the ledger and the confirmed orders agree, both ways"
    facts = check(snapshot, LIMITS).check(name).facts
    assert facts["pushes by provider"] == {"fallback": 1, "mpesa": 3}
    assert list(facts["pushes by provider"]) == ["fallback", "mpesa"]  # sorted
    assert "pushes by provider" not in check(clean(), LIMITS).check(name).facts


def test_held_and_sold_seats_are_each_counted() -> None:
    snapshot = Snapshot(
        taken_at=NOW,
        trips=[TripSeats(TRIP, capacity=6, seat_rows=6)],
        allocations=[
            SeatClaim(TRIP, 1, O1, sold=True),
            SeatClaim(TRIP, 2, O1, sold=True),
            SeatClaim(TRIP, 3, O2, sold=False),
            SeatClaim(TRIP, 4, O2, sold=False),
        ],
        tickets=[SeatClaim(TRIP, 1, O1), SeatClaim(TRIP, 2, O1)],
        orders=[order(1, "CONFIRMED"), order(2, "PENDING_PAYMENT", age=10)],
        payments=[PaymentRow("p1", O1, "SUCCEEDED", 1500)],
    )
    report = check(snapshot, LIMITS)
    assert report.ok, report.render()
    assert report.check("held + sold + free = capacity").facts == {
        "trips": 1,
        "held": 2,
        "sold": 2,
        "free": 2,
        "capacity": 6,
    }


def test_every_recorded_operation_is_counted() -> None:
    snapshot = clean()
    snapshot.orders.append(order(4, "CONFIRMED"))
    ops = [
        *(op("invoke", k) for k in ("a", "b", "c", "d", "e", "f")),
        op("ok", "a", order_id=O1),
        op("ok", "b", order_id=order_id(4)),
        op("fail", "c", status=409),
        op("fail", "d", status=422),
        op("unknown", "e", status=503),
        op("unknown", "f", status=503),
    ]
    facts = check(snapshot, LIMITS, ops).check("recorded operations accounted for").facts
    assert (facts["invoked"], facts["ok"], facts["fail"], facts["unknown"]) == (6, 2, 2, 2)
    assert facts["ok_became"] == {"CONFIRMED": 2}
    assert facts["unknown_became"] == {"never took effect": 2}


def test_a_key_the_gateway_still_holds_in_flight_is_not_looked_up_in_ticketing() -> None:
    """Only a key the gateway released is looked up by its request key; one still in flight is
    unresolved until the gateway stores its answer."""
    from safiri_chaos.invariants.operations import client_id, request_key

    client = client_id("sk_test_key")
    snapshot = clean()
    snapshot.idempotency = {"k1": IdempotencyRecord("k1", None, None)}
    snapshot.request_keys = {request_key(client, "k1"): O1}
    ops = [op("invoke", "k1"), op("unknown", "k1", status=503)]
    facts = check(snapshot, LIMITS, ops, client).check("recorded operations accounted for").facts
    assert facts["unknown_became"] == {"unresolved": 1}


def test_an_expired_order_is_final_never_pending_past_its_bound() -> None:
    """mutmut does not mutate FINAL_STATUSES (a module constant): without EXPIRED in it, every
    other test passed."""
    snapshot = clean()
    snapshot.orders.append(order(5, "EXPIRED", age=1000))
    report = check(snapshot, LIMITS)
    assert report.ok, report.render()
    assert report.check("every accepted order final in time").facts["in_flight"] == 1

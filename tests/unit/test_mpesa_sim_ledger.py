"""The ledger is the provider's ground truth: what was charged, when, and whether it was told."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from safiri_mpesa_sim.ledger import CallbackDelivery, Ledger, TransactionState, UnknownCheckout
from safiri_mpesa_sim.outcomes import SUCCESS, Outcome
from safiri_mpesa_sim.stk_push import StkPush

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 25, 11, 30, tzinfo=UTC)
CANCELLED = Outcome(1032, "Request cancelled by user")


def a_push(phone: str = "254712345678", amount: int = 1500) -> StkPush:
    return StkPush(phone, amount, "http://127.0.0.1/cb", "ORDER-1", "Bus ticket")


def test_opened_push_is_pending_with_daraja_style_ids() -> None:
    ledger = Ledger()
    transaction = ledger.open(a_push(), SUCCESS, NOW)
    assert re.fullmatch(r"ws_CO_\d{24}", transaction.checkout_request_id)
    assert re.fullmatch(r"\d{5}-\d{8}-1", transaction.merchant_request_id)
    assert transaction.state is TransactionState.PENDING
    assert transaction.result is None
    assert transaction.receipt is None
    assert not transaction.charged
    assert ledger.get(transaction.checkout_request_id) is transaction


def test_checkout_ids_are_unique_even_within_one_second() -> None:
    ledger = Ledger()
    ids = {ledger.open(a_push(), SUCCESS, NOW).checkout_request_id for _ in range(500)}
    assert len(ids) == 500


def test_completed_success_is_a_charge_with_a_receipt() -> None:
    ledger = Ledger()
    opened = ledger.open(a_push(), SUCCESS, NOW)
    done = ledger.complete(opened.checkout_request_id, NOW + timedelta(seconds=1))
    assert done.state is TransactionState.COMPLETED
    assert done.result == SUCCESS
    assert done.charged
    assert done.receipt is not None
    assert re.fullmatch(r"[A-Z0-9]{10}", done.receipt)
    assert done.completed_at == NOW + timedelta(seconds=1)


def test_completed_failure_charges_nothing() -> None:
    ledger = Ledger()
    opened = ledger.open(a_push(), CANCELLED, NOW)
    done = ledger.complete(opened.checkout_request_id, NOW)
    assert done.result == CANCELLED
    assert not done.charged
    assert done.receipt is None


def test_completing_twice_never_charges_twice() -> None:
    ledger = Ledger()
    opened = ledger.open(a_push(), SUCCESS, NOW)
    first = ledger.complete(opened.checkout_request_id, NOW)
    receipt = first.receipt
    again = ledger.complete(opened.checkout_request_id, NOW + timedelta(hours=1))
    assert again.receipt == receipt
    assert again.completed_at == NOW


def test_a_push_planned_never_to_complete_cannot_be_completed() -> None:
    ledger = Ledger()
    opened = ledger.open(a_push("254700009999"), None, NOW)
    with pytest.raises(ValueError, match="never meant to complete"):
        ledger.complete(opened.checkout_request_id, NOW)
    assert opened.state is TransactionState.PENDING


def test_unknown_checkout_is_reported() -> None:
    with pytest.raises(UnknownCheckout):
        Ledger().get("ws_CO_nope")


def test_callback_delivery_is_recorded() -> None:
    ledger = Ledger()
    delivered = ledger.open(a_push(), SUCCESS, NOW)
    failed = ledger.open(a_push(), SUCCESS, NOW)
    assert delivered.callback is CallbackDelivery.NOT_SENT
    ledger.record_callback(delivered.checkout_request_id, delivered=True)
    ledger.record_callback(failed.checkout_request_id, delivered=False)
    assert ledger.get(delivered.checkout_request_id).callback is CallbackDelivery.DELIVERED
    assert ledger.get(failed.checkout_request_id).callback is CallbackDelivery.FAILED
    assert ledger.transactions() == [delivered, failed]


def test_a_ledger_with_a_journal_remembers_every_charge_across_a_restart(tmp_path: Path) -> None:
    journal = tmp_path / "ledger.jsonl"
    first = Ledger(journal, now=NOW)
    paid = first.open(a_push(), SUCCESS, NOW)
    first.complete(paid.checkout_request_id, NOW + timedelta(seconds=1))
    first.record_callback(paid.checkout_request_id, delivered=True)
    refused = first.open(a_push(amount=900), CANCELLED, NOW)
    first.complete(refused.checkout_request_id, NOW + timedelta(seconds=2))
    waiting = first.open(a_push(amount=700), None, NOW)
    first.close()  # as a kill -9 would leave it: every line was flushed when written

    again = Ledger(journal, now=NOW + timedelta(hours=1))
    assert again.durable and again.since == NOW  # the record began with the first process
    restored = {t.checkout_request_id: t for t in again.transactions()}
    assert list(restored) == [
        paid.checkout_request_id,
        refused.checkout_request_id,
        waiting.checkout_request_id,
    ]
    assert restored[paid.checkout_request_id].charged
    assert restored[paid.checkout_request_id].receipt == paid.receipt
    assert restored[paid.checkout_request_id].callback is CallbackDelivery.DELIVERED
    assert not restored[refused.checkout_request_id].charged
    assert restored[waiting.checkout_request_id].state is TransactionState.PENDING
    later = again.open(a_push(), SUCCESS, NOW + timedelta(hours=1))
    again.close()
    assert later.checkout_request_id not in restored


def test_without_a_journal_the_ledger_begins_with_the_process() -> None:
    ledger = Ledger(now=NOW)
    assert (ledger.durable, ledger.since) == (False, NOW)

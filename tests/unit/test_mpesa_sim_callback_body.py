"""The result callback has Daraja's shape; only a success carries CallbackMetadata."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from safiri_mpesa_sim.callbacks import RetryPolicy, callback_body
from safiri_mpesa_sim.ledger import Ledger
from safiri_mpesa_sim.outcomes import SUCCESS, Outcome
from safiri_mpesa_sim.stk_push import StkPush

pytestmark = pytest.mark.unit

PUSH = StkPush("254712345678", 1500, "http://127.0.0.1/cb", "ORDER-1", "Bus ticket")
PAID_AT = datetime(2026, 1, 25, 11, 30, 5, tzinfo=UTC)


def test_success_callback_carries_amount_receipt_date_and_phone() -> None:
    ledger = Ledger()
    transaction = ledger.complete(ledger.open(PUSH, SUCCESS, PAID_AT).checkout_request_id, PAID_AT)
    callback = callback_body(transaction)["Body"]["stkCallback"]
    assert callback["MerchantRequestID"] == transaction.merchant_request_id
    assert callback["CheckoutRequestID"] == transaction.checkout_request_id
    assert callback["ResultCode"] == 0
    assert callback["ResultDesc"] == "The service request is processed successfully."
    items = {item["Name"]: item["Value"] for item in callback["CallbackMetadata"]["Item"]}
    assert items == {
        "Amount": 1500,
        "MpesaReceiptNumber": transaction.receipt,
        # Daraja dates are Nairobi time (UTC+3).
        "TransactionDate": 20260125143005,
        "PhoneNumber": 254712345678,
    }


def test_failure_callback_has_no_metadata() -> None:
    ledger = Ledger()
    cancelled = Outcome(1032, "Request cancelled by user")
    opened = ledger.open(PUSH, cancelled, PAID_AT)
    callback = callback_body(ledger.complete(opened.checkout_request_id, PAID_AT))
    assert callback == {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": opened.merchant_request_id,
                "CheckoutRequestID": opened.checkout_request_id,
                "ResultCode": 1032,
                "ResultDesc": "Request cancelled by user",
            }
        }
    }


def test_pending_transaction_has_nothing_to_report() -> None:
    transaction = Ledger().open(PUSH, SUCCESS, PAID_AT)
    with pytest.raises(ValueError, match="no result"):
        callback_body(transaction)


def test_default_retry_policy_is_three_attempts_with_short_backoff() -> None:
    policy = RetryPolicy()
    assert policy.attempts == 3
    assert policy.backoff == (0.2, 0.5)

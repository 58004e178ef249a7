"""The result callback has Daraja's shape; only a success carries CallbackMetadata."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from safiri_mpesa_sim.callbacks import Delivery, RetryPolicy, callback_body, deliver_callback
from safiri_mpesa_sim.ledger import Ledger
from safiri_mpesa_sim.outcomes import SUCCESS, Outcome
from safiri_mpesa_sim.stk_push import StkPush
from tests.conftest import free_port, serving

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


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([503, 500, 200], Delivery(True, 3, 200)),
        ([200], Delivery(True, 1, 200)),
        ([404], Delivery(False, 1, 404)),
        ([502, 400], Delivery(False, 2, 400)),
        ([503, 503, 503, 200], Delivery(False, 3, 503)),
    ],
)
async def test_a_callback_is_retried_on_5xx_only_and_counts_its_attempts(
    answers: list[int], expected: Delivery
) -> None:
    left = list(answers)

    async def merchant(_: web.Request) -> web.Response:
        return web.Response(status=left.pop(0))

    app = web.Application()
    app.router.add_post("/cb", merchant)
    async with serving(app) as url, aiohttp.ClientSession() as session:
        delivery = await deliver_callback(
            session, f"{url}/cb", {"Body": {}}, RetryPolicy(backoff=(0.01, 0.01))
        )
    assert delivery == expected
    assert len(answers) - len(left) == expected.attempts


async def test_an_unreachable_merchant_is_tried_each_time_then_given_up() -> None:
    async with aiohttp.ClientSession() as session:
        delivery = await deliver_callback(
            session, f"http://127.0.0.1:{free_port()}/cb", {}, RetryPolicy(backoff=(0.01, 0.01))
        )
    assert (delivery.delivered, delivery.attempts, delivery.status) == (False, 3, None)
    assert delivery.error is not None
    assert "ClientConnectorError" in delivery.error

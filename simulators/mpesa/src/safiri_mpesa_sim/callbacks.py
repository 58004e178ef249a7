"""The Daraja result callback: its JSON body, and delivering it with a bounded retry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

import aiohttp
from loguru import logger

from .ledger import Transaction

__all__ = ["Delivery", "RetryPolicy", "callback_body", "deliver_callback"]

# Daraja stamps transactions in Nairobi time; Kenya keeps no daylight saving, so a fixed offset
# is exact and needs no tz database.
_NAIROBI = timezone(timedelta(hours=3))


@dataclass(frozen=True)
class RetryPolicy:
    """Pause before each retry; a connection error or 5xx is retried, a 4xx is final."""

    backoff: tuple[float, ...] = (0.2, 0.5)
    timeout: float = 5.0

    @property
    def attempts(self) -> int:
        return len(self.backoff) + 1


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    attempts: int
    status: int | None  # the last HTTP status, None when no response ever came back
    error: str | None = None


def callback_body(transaction: Transaction) -> dict[str, Any]:
    result = transaction.result
    if result is None:
        raise ValueError(f"{transaction.checkout_request_id} has no result to report yet")
    callback: dict[str, Any] = {
        "MerchantRequestID": transaction.merchant_request_id,
        "CheckoutRequestID": transaction.checkout_request_id,
        "ResultCode": result.result_code,
        "ResultDesc": result.result_desc,
    }
    if result.succeeded and transaction.completed_at is not None:
        paid_at = transaction.completed_at.astimezone(_NAIROBI)
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": transaction.push.amount},
                {"Name": "MpesaReceiptNumber", "Value": transaction.receipt},
                {"Name": "TransactionDate", "Value": int(paid_at.strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": int(transaction.push.phone)},
            ]
        }
    return {"Body": {"stkCallback": callback}}


async def deliver_callback(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], policy: RetryPolicy
) -> Delivery:
    """POST ``body`` to ``url`` until it is accepted, refused with a 4xx, or attempts run out."""
    status: int | None = None
    error: str | None = None
    timeout = aiohttp.ClientTimeout(total=policy.timeout)
    for attempt in range(1, policy.attempts + 1):
        try:
            async with session.post(
                url, json=body, timeout=timeout, allow_redirects=False
            ) as response:
                status, error = response.status, None
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"
        if status is not None and status < 300:
            return Delivery(True, attempt, status)
        if status is not None and status < 500:
            return Delivery(False, attempt, status)
        if attempt < policy.attempts:
            pause = policy.backoff[attempt - 1]
            logger.bind(attempt=attempt, http_status=status, error=error, retry_in=pause).info(
                "mpesa callback attempt failed; retrying"
            )
            await asyncio.sleep(pause)
    return Delivery(False, policy.attempts, status, error)

"""The Daraja result callback: its JSON body, and delivering it with a bounded retry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

import aiohttp
from loguru import logger
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_chain,
    wait_fixed,
)

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
    timeout = aiohttp.ClientTimeout(total=policy.timeout)

    async def attempt() -> tuple[int | None, str | None]:
        try:
            async with session.post(
                url, json=body, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def worth_retrying(answer: tuple[int | None, str | None]) -> bool:
        return answer[0] is None or answer[0] >= 500

    def before_sleep(state: RetryCallState) -> None:
        status, error = state.outcome.result() if state.outcome else (None, None)
        pause = state.next_action.sleep if state.next_action else 0.0
        logger.bind(
            attempt=state.attempt_number, http_status=status, error=error, retry_in=pause
        ).info("mpesa callback attempt failed; retrying")

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_chain(*(wait_fixed(pause) for pause in policy.backoff)),
        retry=retry_if_result(worth_retrying),
        before_sleep=before_sleep,
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )
    answer: tuple[int | None, str | None] = await retrying(attempt)
    status, error = answer
    attempts = retrying.statistics.get("attempt_number", policy.attempts)
    if status is not None and status < 300:
        return Delivery(True, attempts, status)
    if status is not None and status < 500:
        return Delivery(False, attempts, status)
    return Delivery(False, attempts, status, error)

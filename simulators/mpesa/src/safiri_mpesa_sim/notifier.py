"""Settles accepted pushes in the background and tells the merchant through its callback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
from loguru import logger
from opentelemetry.context import Context

from safiri_telemetry import business_span, mask_phone

from .callbacks import Delivery, RetryPolicy, callback_body, deliver_callback
from .ledger import Ledger, Transaction
from .metrics import SimulatorMetrics

__all__ = ["ResultNotifier"]


class ResultNotifier:
    """Owns one background task per unsettled push; ``aclose`` cancels and awaits them all."""

    def __init__(
        self,
        ledger: Ledger,
        session: aiohttp.ClientSession,
        metrics: SimulatorMetrics,
        delay: float,
        policy: RetryPolicy | None = None,
    ) -> None:
        self._ledger = ledger
        self._session = session
        self._metrics = metrics
        self._delay = delay
        self._policy = policy or RetryPolicy()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def schedule(self, transaction: Transaction, trace_context: Context) -> None:
        """Settle ``transaction`` after the delay, inside the trace of the push that opened it.

        The push's HTTP span has ended by then; parenting on its context is what makes the
        callback (and the payment service's handling of it) part of the purchase's trace.
        """
        if transaction.planned is None:
            return
        task = asyncio.create_task(
            self._settle(transaction.checkout_request_id, trace_context),
            name=f"mpesa-settle-{transaction.checkout_request_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        """Wait until every push scheduled so far has been settled and its callback sent."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _settle(self, checkout_request_id: str, trace_context: Context) -> None:
        await asyncio.sleep(self._delay)
        attributes = {"safiri.mpesa.checkout_request_id": checkout_request_id}
        try:
            with (
                logger.contextualize(checkout_request_id=checkout_request_id),
                business_span("mpesa.deliver_callback", attributes, parent=trace_context) as span,
            ):
                transaction = self._ledger.complete(checkout_request_id, datetime.now(UTC))
                result_code = transaction.result.result_code if transaction.result else None
                span.set_attribute("safiri.mpesa.result_code", str(result_code))
                delivery = await deliver_callback(
                    self._session,
                    transaction.push.callback_url,
                    callback_body(transaction),
                    self._policy,
                )
                span.set_attribute("safiri.mpesa.callback_attempts", delivery.attempts)
                self._ledger.record_callback(checkout_request_id, delivery.delivered)
                self._report(transaction, delivery)
        except Exception:
            # Nobody awaits this task until shutdown; without this the error would be silent.
            logger.bind(checkout_request_id=checkout_request_id).exception(
                "mpesa callback could not be settled"
            )

    def _report(self, transaction: Transaction, delivery: Delivery) -> None:
        outcome = "delivered" if delivery.delivered else "failed"
        self._metrics.callbacks.labels(outcome).inc()
        log = logger.bind(
            checkout_request_id=transaction.checkout_request_id,
            result_code=transaction.result.result_code if transaction.result else None,
            http_status=delivery.status,
            attempts=delivery.attempts,
            phone=mask_phone(transaction.push.phone),
            callback_outcome=outcome,
        )
        if delivery.delivered:
            log.info("mpesa callback delivered")
        else:
            log.bind(error=delivery.error).warning("mpesa callback failed")

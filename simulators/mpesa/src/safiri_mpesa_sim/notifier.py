"""Settles accepted pushes in the background and tells the merchant through its callback."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiohttp
from loguru import logger
from opentelemetry.context import Context
from opentelemetry.trace import Span

from safiri_telemetry import business_span, mask_phone

from .callbacks import Delivery, RetryPolicy, callback_body, deliver_callback
from .faults import CallbackFault
from .ledger import Ledger, Transaction
from .metrics import SimulatorMetrics

__all__ = ["ResultNotifier"]


class ResultNotifier:
    """Owns one background task per unsettled push; ``aclose`` cancels and awaits them all.

    Callback faults: ``lost`` settles the push but never sends its callback; ``duplicate`` POSTs
    each callback twice, one after the other;
    ``out_of_order`` holds each odd-numbered ready callback until the next one is ready, sends
    that one first and then the held one, so the merchant hears of each pair in reverse.
    """

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
        # The out_of_order callback waiting for a partner: resolved once the partner is sent.
        self._held: asyncio.Future[None] | None = None

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def schedule(
        self,
        transaction: Transaction,
        trace_context: Context,
        callbacks: CallbackFault = CallbackFault.NORMAL,
    ) -> None:
        """Settle ``transaction`` after the delay, inside the trace of the push that opened it.

        The push's HTTP span has ended by then; parenting on its context is what makes the
        callback (and the payment service's handling of it) part of the purchase's trace.
        ``callbacks`` is the callback fault in force when the push was accepted.
        """
        if transaction.planned is None:
            return
        task = asyncio.create_task(
            self._settle(transaction.checkout_request_id, trace_context, callbacks),
            name=f"mpesa-settle-{transaction.checkout_request_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        """Wait until every push scheduled so far has been settled and its callback sent."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    def release_held(self) -> None:
        """Send the callback ``out_of_order`` is holding back now, without waiting for a partner.

        Called when that fault is switched off: nothing else would ever release it.
        """
        held, self._held = self._held, None
        if held is not None and not held.done():
            held.set_result(None)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _settle(
        self, checkout_request_id: str, trace_context: Context, callbacks: CallbackFault
    ) -> None:
        await asyncio.sleep(self._delay)
        attributes = {
            "safiri.mpesa.checkout_request_id": checkout_request_id,
            "safiri.mpesa_sim.callbacks": callbacks.value,
        }
        try:
            with (
                logger.contextualize(checkout_request_id=checkout_request_id),
                business_span("mpesa.deliver_callback", attributes, parent=trace_context) as span,
            ):
                transaction = self._ledger.complete(checkout_request_id, datetime.now(UTC))
                result_code = transaction.result.result_code if transaction.result else None
                span.set_attribute("safiri.mpesa.result_code", str(result_code))
                if callbacks is CallbackFault.LOST:
                    span.set_attribute("safiri.mpesa_sim.callback_lost", True)
                    self._metrics.callbacks.labels("lost").inc()
                    logger.warning("mpesa callback lost on purpose (fault: callbacks=lost)")
                elif callbacks is CallbackFault.OUT_OF_ORDER:
                    await self._deliver_out_of_order(transaction, span)
                else:
                    times = 2 if callbacks is CallbackFault.DUPLICATE else 1
                    await self._deliver(transaction, span, times)
        except Exception:
            # Nobody awaits this task until shutdown; without this the error would be silent.
            logger.bind(checkout_request_id=checkout_request_id).exception(
                "mpesa callback could not be settled"
            )

    async def _deliver_out_of_order(self, transaction: Transaction, span: Span) -> None:
        partner, self._held = self._held, None
        if partner is None or partner.done():  # done: its task was cancelled at shutdown
            turn = asyncio.get_running_loop().create_future()
            self._held = turn
            span.set_attribute("safiri.mpesa_sim.callback_held", True)
            await turn
            await self._deliver(transaction, span)
            return
        try:
            await self._deliver(transaction, span)
        finally:
            if not partner.done():
                partner.set_result(None)

    async def _deliver(self, transaction: Transaction, span: Span, times: int = 1) -> None:
        deliveries = []
        for _ in range(times):
            delivery = await deliver_callback(
                self._session,
                transaction.push.callback_url,
                callback_body(transaction),
                self._policy,
            )
            deliveries.append(delivery)
            self._report(transaction, delivery)
        span.set_attribute("safiri.mpesa.callback_attempts", sum(d.attempts for d in deliveries))
        # The merchant has heard of the payment if any copy got through.
        delivered = any(d.delivered for d in deliveries)
        self._ledger.record_callback(transaction.checkout_request_id, delivered)

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

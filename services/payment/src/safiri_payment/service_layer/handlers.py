"""Payment's use cases: request a payment, apply the provider's callback."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from time import perf_counter

from loguru import logger
from opentelemetry.trace import Link, Span, Status, StatusCode, get_current_span

from safiri_contracts import PaymentFailed, PaymentRequested, PaymentSucceeded
from safiri_telemetry import business_span, context_from_carrier, http_step, mask_phone

from ..domain.payments import CallbackRejected, Payment, PaymentStatus, ProviderOutcome
from ..metrics import PaymentMetrics
from .canary import (
    VARIANT_ATTRIBUTE,
    VARIANTS,
    ChooseVariant,
    choose_variant,
    current_variant,
    in_arm,
    variant_of,
)
from .provider import (
    PaymentProvider,
    ProviderCircuitOpen,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    StkPush,
)
from .routing import Routes
from .unit_of_work import PaymentStore, Recorded, StoredPayment, UnitOfWork, UnitOfWorkFactory

__all__ = ["CallbackRejected", "PaymentRequest", "Payments", "token_hash"]

CallbackUrl = Callable[[str, str], str]  # (payment_id, token) -> URL
Clock = Callable[[], datetime]


KNOWN_RESULT_CODES = ("0", "1", "1032", "1037", "2001")
# payment_reconciliations_total's outcomes, each a series at 0 from the start.
RECONCILIATION_OUTCOMES = ("settled", "already_final", "pending", "error")


def account_reference(order_id: str) -> str:
    """What the push carries as its AccountReference (Daraja allows 12 characters)."""
    return order_id[:12]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _apply_push_answer(
    payment: Payment, checkout_id: str | None, failure: ProviderOutcome | None
) -> bool:
    """The STK push's answer: the provider took it, refused it (or was not reached), or it
    is unknown whether it took it. ``True`` if the answer settled the payment (it failed):
    a verdict that came first (a callback, the reconciler) is final and stands."""
    if checkout_id is not None:
        payment.accepted(checkout_id)
    elif failure is not None:
        return payment.push_failed(failure)
    else:
        payment.outcome_unknown("STK push timed out; reconcile by STK query")
    return False


@dataclass(frozen=True)
class PaymentRequest:
    message_id: str
    order_id: str
    amount: int
    currency: str
    phone: str
    description: str

    @classmethod
    def from_message(cls, message_id: str, message: PaymentRequested) -> PaymentRequest:
        return cls(
            message_id=message_id,
            order_id=message.order_id,
            amount=message.amount,
            currency=message.currency,
            phone=message.phone,
            description=message.description,
        )


class Payments:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        provider: PaymentProvider | Routes,
        metrics: PaymentMetrics,
        callback_url: CallbackUrl,
        *,
        store: PaymentStore,
        abandon_after: timedelta = timedelta(minutes=10),
        clock: Clock = _utcnow,
        choose_variant: ChooseVariant | None = None,
    ) -> None:
        self._uow = uow
        # A purchase's writes that need no unit of work: one statement, one round trip each.
        self._store = store
        # The provider-policy canary's flag, asked per payment (canary.py); None: baseline.
        self._choose_variant = choose_variant
        # One provider, or the routes: new payments to the flagged one, the rest to the
        # provider each payment records.
        self._routes = (
            provider if isinstance(provider, Routes) else Routes.single(provider, metrics)
        )
        self._metrics = metrics
        self._callback_url = callback_url
        # A push whose answer was never recorded and whose charge is not in the provider's
        # list this long after it was asked for never will be: its prompt has long expired.
        self._abandon_after = abandon_after
        self._clock = clock
        # Known series at 0 from the start, so "no rejected callbacks" reads 0, not no data.
        for name in self._routes.configured:
            for outcome in ("applied", "duplicate", "rejected"):
                metrics.callbacks.labels(name, outcome)
            for outcome in RECONCILIATION_OUTCOMES:
                metrics.reconciliations.labels(name, outcome)
            # Daraja's result codes a payment ends with (success, insufficient funds, cancelled,
            # unreachable, wrong PIN): the first failure of a kind is counted by increase() too.
            for code in KNOWN_RESULT_CODES:
                for variant in VARIANTS:
                    metrics.results.labels(name, code, variant)
            # Each arm's accepted pushes too: its first push in a window counts in its p95.
            for variant in VARIANTS:
                metrics.provider_duration.labels(name, "stk_push", "accepted", variant)

    async def request_payment(self, req: PaymentRequest) -> None:
        """Charge the order once: record it, then send the STK push."""
        attrs = {"safiri.order.id": req.order_id, "safiri.amount": req.amount}
        with (
            business_span("request_payment", attrs) as span,
            logger.contextualize(order_id=req.order_id),
            self._arm(req.order_id, span),
        ):
            payment = Payment(str(uuid.uuid4()), req.order_id, req.amount, req.currency, req.phone)
            token = secrets.token_urlsafe(24)
            # A redelivery is known before the flag is asked (it is asked for new payments
            # only); recording the message and the payment below settles it under concurrency.
            if await self._store.handled(req.message_id):
                logger.info("payment request already handled; duplicate ignored")
                return
            # The flag is asked here, once per payment, inside this span (its evaluation
            # event lands on it); the payment keeps the route for its whole life.
            provider = self._routes.for_new_payment(req.order_id)
            payment.provider = provider.name
            recorded = await self._store.record_request(req.message_id, payment, token_hash(token))
            if recorded is Recorded.DUPLICATE:  # another delivery of it was recorded first
                logger.info("payment request already handled; duplicate ignored")
                return
            span.set_attribute("safiri.payment.provider", provider.name)
            if recorded is Recorded.ORDER_HAS_PAYMENT:
                logger.warning("order already has a payment; not charging twice")
                return
            span.set_attribute("safiri.payment.id", payment.payment_id)
            push = StkPush(
                amount=req.amount,
                phone=req.phone,
                account_reference=account_reference(req.order_id),
                description=req.description[:13],
                callback_url=self._callback_url(payment.payment_id, token),
            )
            await self._send_stk_push(payment, push, provider)

    @contextmanager
    def _arm(self, order_id: str, span: Span) -> Iterator[str]:
        """The payment's canary arm, asked of the flag once (its evaluation event lands on
        ``span``), current as baggage while the payment is handled: the payment's stored trace
        context keeps it, and the resilient provider applies the arm's policy."""
        variant = choose_variant(self._choose_variant, order_id)
        span.set_attribute(VARIANT_ATTRIBUTE, variant)
        with in_arm(variant):
            yield variant

    async def _send_stk_push(self, payment: Payment, push: StkPush, route: PaymentProvider) -> None:
        provider, variant = route.name, current_variant()
        attrs = {
            "safiri.payment.id": payment.payment_id,
            "safiri.payment.provider": provider,
            "safiri.phone": mask_phone(payment.phone),
            VARIANT_ATTRIBUTE: variant,
        }
        started = perf_counter()
        outcome = "accepted"
        checkout_id: str | None = None
        failure: ProviderOutcome | None = None
        try:
            # One span for the step and its call (kind CLIENT; the provider's server span is its
            # child): the instrumentation's client span would only repeat it.
            with http_step("provider.stk_push", attrs) as span:
                checkout_id = await route.stk_push(push)
                span.set_attribute("safiri.payment.checkout_request_id", checkout_id)
        except ProviderRejected as exc:
            outcome = "rejected"
            failure = ProviderOutcome(-1, f"provider rejected the request: {exc.message}")
        except ProviderCircuitOpen as exc:
            outcome = "circuit_open"
            failure = ProviderOutcome(-1, f"payment provider unavailable: {exc}")
        except ProviderTimeout as exc:
            outcome = "unknown"
            logger.bind(error=str(exc)).warning("STK push outcome unknown")
        except ProviderError as exc:
            outcome = "unavailable"
            failure = ProviderOutcome(-1, f"payment provider unavailable: {exc}")
        finally:
            self._metrics.provider_duration.labels(provider, "stk_push", outcome, variant).observe(
                perf_counter() - started
            )
        # The answer, decided from the payment as this handler recorded it, is written in one
        # statement if the row still is that, as it almost always is. A failure goes with its
        # event (a unit of work); a row changed meanwhile (the callback or the reconciler came
        # first) is decided again from the row itself, locked: a verdict found there is final,
        # the answer adds at most its CheckoutRequestID, and nothing is emitted again.
        answered = replace(payment)
        failed = _apply_push_answer(answered, checkout_id, failure)
        if failure is not None or not await self._store.save_if_unchanged(payment, answered):
            async with self._uow() as uow:
                stored = await uow.get(payment.payment_id)
                assert stored is not None
                answered = replace(stored.payment)
                failed = _apply_push_answer(answered, checkout_id, failure)
                if failed:
                    self._emit_result(uow, answered)
                if answered != stored.payment:
                    await uow.save(answered)
                await uow.commit()
        if checkout_id is not None:
            logger.bind(checkout_request_id=checkout_id).info("STK push accepted")
        elif failed:
            assert failure is not None
            logger.bind(reason=failure.result_desc).warning(
                "payment failed before the provider took it"
            )
            self._metrics.results.labels(provider, str(failure.result_code), variant).inc()
        elif answered.status.is_final:
            # The provider's verdict came first; the push call's own failure changes nothing.
            logger.bind(reason=failure.result_desc if failure else "timed out").info(
                "STK push failed after the provider's verdict; the verdict stands"
            )

    async def apply_callback(
        self, payment_id: str, token: str, checkout_request_id: str, outcome: ProviderOutcome
    ) -> bool:
        """Apply the provider's verdict once; ``False`` for a duplicate callback.

        The payment's record says which provider it belongs to (the callback URL is the same
        for every route; its token is the payment's own)."""
        async with self._uow() as uow:
            stored = await uow.get(payment_id)
            if stored is None or not hmac.compare_digest(
                stored.callback_token_hash, token_hash(token)
            ):
                label = stored.payment.provider if stored is not None else self._routes.default
                self._metrics.callbacks.labels(label, "rejected").inc()
                raise CallbackRejected("unknown payment or wrong callback token")
            payment = stored.payment
            provider = payment.provider
            # Counted in the arm that took the payment, whatever the flag says now.
            variant = variant_of(stored.trace_context)
            payment.check_callback(checkout_request_id)
            incoming = get_current_span().get_span_context()
            attrs = {
                "safiri.order.id": payment.order_id,
                "safiri.payment.id": payment_id,
                "safiri.payment.provider": provider,
                VARIANT_ATTRIBUTE: variant,
                "safiri.payment.result_code": outcome.result_code,
                "safiri.payment.result_desc": outcome.result_desc,
            }
            # The callback is a new request from the provider; its handling belongs to the
            # purchase's trace, with a link back to the request that carried it.
            with (
                business_span(
                    "handle_callback",
                    attrs,
                    parent=context_from_carrier(stored.trace_context),
                    links=[Link(incoming)] if incoming.is_valid else None,
                ) as span,
                logger.contextualize(order_id=payment.order_id),
            ):
                if not await self._settle(uow, payment, outcome, span):
                    self._metrics.callbacks.labels(provider, "duplicate").inc()
                    logger.info("duplicate callback ignored")
                    return False
        self._metrics.callbacks.labels(provider, "applied").inc()
        self._count_settled(payment, variant)
        return True

    async def reconcile(self, overdue_after: timedelta, limit: int = 50) -> int:
        """Ask the provider about payments whose callback is overdue; returns how many settled.

        A payment the provider still calls pending stays as it is (its order keeps its seats);
        it is asked about again once it is overdue again.
        """
        async with self._uow() as uow:
            overdue = await uow.overdue(overdue_after, limit)
        settled = 0
        for stored in overdue:
            settled += await self._reconcile(stored)
        return settled

    async def _reconcile(self, stored: StoredPayment) -> bool:
        # The provider that took the payment is asked, never the route flagged now.
        payment, variant = stored.payment, variant_of(stored.trace_context)
        route = self._routes.recorded(payment.provider)
        provider = route.name
        if payment.checkout_request_id is None:
            return await self._reconcile_unrecorded(stored)
        attrs = {
            "safiri.order.id": payment.order_id,
            "safiri.payment.id": payment.payment_id,
            "safiri.payment.provider": provider,
            "safiri.payment.checkout_request_id": payment.checkout_request_id,
            VARIANT_ATTRIBUTE: variant,
        }
        with (
            business_span(
                "reconcile_payment", attrs, parent=context_from_carrier(stored.trace_context)
            ) as span,
            logger.contextualize(order_id=payment.order_id),
        ):
            started = perf_counter()
            try:
                with business_span("provider.stk_query", attrs) as query:
                    outcome = await route.stk_query(payment.checkout_request_id)
                    query.set_attribute("safiri.payment.pending", outcome is None)
            except ProviderError as exc:
                self._observe(provider, started, "stk_query", "unavailable", variant)
                self._metrics.reconciliations.labels(provider, "error").inc()
                logger.bind(error=str(exc)).warning("STK query failed; will ask again")
                return False
            self._observe(
                provider,
                started,
                "stk_query",
                "pending" if outcome is None else "answered",
                variant,
            )
            if outcome is None:
                span.set_attribute("safiri.payment.pending", True)
                logger.info("provider still processing the payment; seats stay held")
            return await self._conclude(payment.payment_id, outcome, span)

    async def _reconcile_unrecorded(self, stored: StoredPayment) -> bool:
        """A push whose answer was never recorded (a timeout, or a crash right after the
        provider took it): look for its charge in the provider's transaction list."""
        payment, variant = stored.payment, variant_of(stored.trace_context)
        route = self._routes.recorded(payment.provider)
        provider = route.name
        attrs = {
            "safiri.order.id": payment.order_id,
            "safiri.payment.id": payment.payment_id,
            "safiri.payment.provider": provider,
            VARIANT_ATTRIBUTE: variant,
        }
        with (
            business_span(
                "reconcile_payment", attrs, parent=context_from_carrier(stored.trace_context)
            ) as span,
            logger.contextualize(order_id=payment.order_id),
        ):
            now = self._clock()
            started = perf_counter()
            try:
                with business_span("provider.pull_transactions", attrs):
                    charges = await route.charges(now - stored.age - timedelta(minutes=1), now)
            except ProviderError as exc:
                self._observe(provider, started, "pull_transactions", "unavailable", variant)
                self._metrics.reconciliations.labels(provider, "error").inc()
                logger.bind(error=str(exc)).warning("pull transactions failed; will ask again")
                return False
            self._observe(provider, started, "pull_transactions", "answered", variant)
            reference = account_reference(payment.order_id)
            charge = next(
                (
                    c
                    for c in charges
                    if c.account_reference == reference and c.amount == payment.amount
                ),
                None,
            )
            outcome: ProviderOutcome | None = None
            if charge is not None:
                outcome = ProviderOutcome(0, "found in the provider's transactions", charge.receipt)
            elif stored.age >= self._abandon_after:
                outcome = ProviderOutcome(
                    -1,
                    f"no charge at the provider {int(stored.age.total_seconds())} s after"
                    " the request: the push was never completed",
                )
            return await self._conclude(payment.payment_id, outcome, span)

    async def _conclude(self, payment_id: str, outcome: ProviderOutcome | None, span: Span) -> bool:
        """A reconciliation's end: settle on a verdict, else ask again once overdue again."""
        async with self._uow() as uow:
            current = await uow.get(payment_id)
            assert current is not None
            provider = current.payment.provider
            if outcome is None:
                self._metrics.reconciliations.labels(provider, "pending").inc()
                await uow.touch(payment_id)
                await uow.commit()
                return False
            span.set_attribute("safiri.payment.result_code", outcome.result_code)
            settled = await self._settle(uow, current.payment, outcome, span)
        # "settled": this query's verdict settled the payment; "already_final": the provider
        # answered, but the callback (or another replica) had settled it in the meantime.
        self._metrics.reconciliations.labels(
            provider, "settled" if settled else "already_final"
        ).inc()
        if settled:
            self._count_settled(current.payment, variant_of(current.trace_context))
        return settled

    async def _settle(
        self, uow: UnitOfWork, payment: Payment, outcome: ProviderOutcome, span: Span
    ) -> bool:
        """Record the provider's verdict and emit it, once; ``False`` if already settled."""
        if not outcome.succeeded:
            # The provider's refusal is the error a person tracing this order looks for.
            span.set_status(
                Status(StatusCode.ERROR, f"ResultCode {outcome.result_code}: {outcome.result_desc}")
            )
        if payment.status.is_final:
            return False
        payment.settle(outcome)
        self._emit_result(uow, payment)  # before the save, which may write it with the row
        await uow.save(payment)
        await uow.commit()
        # A failed payment is what the on-call reader looks for: WARNING, not buried in INFO.
        logger.bind(result_code=outcome.result_code, status=payment.status.value).log(
            "INFO" if outcome.succeeded else "WARNING", "payment settled"
        )
        return True

    def _observe(
        self, provider: str, started: float, operation: str, outcome: str, variant: str
    ) -> None:
        self._metrics.provider_duration.labels(provider, operation, outcome, variant).observe(
            perf_counter() - started
        )

    def _count_settled(self, payment: Payment, variant: str) -> None:
        self._metrics.results.labels(payment.provider, str(payment.result_code), variant).inc()
        if payment.status is PaymentStatus.SUCCEEDED:
            self._metrics.revenue.labels(payment.currency).inc(payment.amount)

    def _emit_result(self, uow: UnitOfWork, payment: Payment) -> None:
        succeeded = payment.status is PaymentStatus.SUCCEEDED
        if succeeded:
            uow.emit(
                PaymentSucceeded(
                    order_id=payment.order_id,
                    payment_id=payment.payment_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    result_desc=payment.result_desc or "",
                    receipt=payment.receipt,
                )
            )
        else:
            uow.emit(
                PaymentFailed(
                    order_id=payment.order_id,
                    payment_id=payment.payment_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    result_code=payment.result_code,
                    result_desc=payment.result_desc or "",
                    receipt=payment.receipt,
                )
            )

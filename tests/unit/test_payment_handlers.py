"""Payment's use cases with a fake provider: one charge per order, callbacks applied once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from loguru import logger
from prometheus_client import CollectorRegistry

from safiri_contracts import PAYMENT_REQUESTS, PaymentFailed, PaymentSucceeded
from safiri_messaging import PoisonMessage
from safiri_payment.domain.payments import (
    CallbackRejected,
    Payment,
    PaymentStatus,
    ProviderOutcome,
)
from safiri_payment.metrics import PaymentMetrics
from safiri_payment.service_layer.handlers import PaymentRequest, Payments
from safiri_payment.service_layer.provider import (
    Charge,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    StkPush,
)

from .fakes import FakePaymentDb

pytestmark = pytest.mark.unit
ORDER = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


class FakeProvider:
    name = "mpesa"

    def __init__(self, error: Exception | None = None) -> None:
        self.pushes: list[StkPush] = []
        self.error = error
        self.queries: list[str] = []
        self.answer: ProviderOutcome | Exception | None = None  # None: still pending
        self.ledger: list[Charge] | Exception = []

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        if isinstance(self.ledger, Exception):
            raise self.ledger
        return list(self.ledger)

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        self.queries.append(checkout_request_id)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def stk_push(self, request: StkPush) -> str:
        self.pushes.append(request)
        if self.error:
            raise self.error
        return f"ws_CO_{len(self.pushes)}"


def setup(
    error: Exception | None = None,
) -> tuple[Payments, FakePaymentDb, FakeProvider, CollectorRegistry]:
    db, provider, registry = FakePaymentDb(), FakeProvider(error), CollectorRegistry()
    payments = Payments(
        db.uow,
        provider,
        PaymentMetrics(registry),
        lambda pid, token: f"http://cb/{pid}?token={token}",
        store=db,
    )
    return payments, db, provider, registry


def request(message_id: str = "m-1") -> PaymentRequest:
    return PaymentRequest(message_id, ORDER, 3000, "KES", "254712345678", "Nairobi-Mombasa x2")


def only_payment(db: FakePaymentDb):  # type: ignore[no-untyped-def]
    (stored,) = db.state["payments"].values()
    return stored


async def test_a_payment_request_sends_one_stk_push_and_awaits_the_callback() -> None:
    payments, db, provider, _ = setup()
    await payments.request_payment(request())
    assert len(provider.pushes) == 1
    assert provider.pushes[0].amount == 3000
    stored = only_payment(db)
    assert stored.payment.status is PaymentStatus.AWAITING_CALLBACK
    assert stored.payment.checkout_request_id == "ws_CO_1"
    assert provider.pushes[0].callback_url.startswith(f"http://cb/{stored.payment.payment_id}?")


async def test_an_order_is_never_charged_twice() -> None:
    payments, _, provider, _ = setup()
    await payments.request_payment(request("m-1"))
    await payments.request_payment(request("m-1"))  # redelivery
    await payments.request_payment(request("m-2"))  # a second request for the same order
    assert len(provider.pushes) == 1


async def test_a_success_callback_settles_once_and_counts_revenue_once() -> None:
    payments, db, _, registry = setup()
    await payments.request_payment(request())
    stored = only_payment(db)
    token = provider_token(db, payments)
    outcome = ProviderOutcome(0, "The service request is processed successfully.", "RCPT1")

    assert await payments.apply_callback(stored.payment.payment_id, token, "ws_CO_1", outcome)
    assert not await payments.apply_callback(stored.payment.payment_id, token, "ws_CO_1", outcome)

    assert only_payment(db).payment.status is PaymentStatus.SUCCEEDED
    assert [key for key, _ in db.outbox] == [PaymentSucceeded.routing_key]
    assert db.outbox[0][1]["receipt"] == "RCPT1"
    assert registry.get_sample_value("payment_revenue_total", {"currency": "KES"}) == 3000
    assert (
        registry.get_sample_value(
            "payment_callbacks_total", {"provider": "mpesa", "outcome": "duplicate"}
        )
        == 1
    )


async def test_a_failure_callback_publishes_the_providers_code_and_reason() -> None:
    payments, db, _, registry = setup()
    await payments.request_payment(request())
    stored = only_payment(db)
    await payments.apply_callback(
        stored.payment.payment_id,
        provider_token(db, payments),
        "ws_CO_1",
        ProviderOutcome(1037, "DS timeout user cannot be reached"),
    )
    assert db.outbox == [
        (
            PaymentFailed.routing_key,
            {
                "schema_version": 1,
                "order_id": ORDER,
                "payment_id": stored.payment.payment_id,
                "amount": 3000,
                "currency": "KES",
                "result_code": 1037,
                "result_desc": "DS timeout user cannot be reached",
                "receipt": None,
            },
        )
    ]
    assert registry.get_sample_value("payment_revenue_total", {"currency": "KES"}) is None


@pytest.mark.parametrize(("token", "checkout"), [("forged", "ws_CO_1"), (None, "ws_CO_other")])
async def test_a_callback_that_does_not_belong_changes_nothing(
    token: str | None, checkout: str
) -> None:
    payments, db, _, _ = setup()
    await payments.request_payment(request())
    stored = only_payment(db)
    with pytest.raises(CallbackRejected):
        await payments.apply_callback(
            stored.payment.payment_id,
            token or provider_token(db, payments),
            checkout,
            ProviderOutcome(0, "ok", "R"),
        )
    assert only_payment(db).payment.status is PaymentStatus.AWAITING_CALLBACK
    assert db.outbox == []


@pytest.mark.parametrize(
    ("error", "status", "published"),
    [
        (
            ProviderRejected("400.002.02", "Bad Request - Invalid PhoneNumber"),
            PaymentStatus.FAILED,
            [PaymentFailed.routing_key],
        ),
        (ProviderUnavailable("refused"), PaymentStatus.FAILED, [PaymentFailed.routing_key]),
        (ProviderTimeout("no answer"), PaymentStatus.UNKNOWN, []),
    ],
)
async def test_a_provider_error_leaves_the_payment_in_a_defined_state(
    error: Exception, status: PaymentStatus, published: list[str]
) -> None:
    payments, db, _, _ = setup(error)
    await payments.request_payment(request())
    assert only_payment(db).payment.status is status
    assert [key for key, _ in db.outbox] == published


@pytest.mark.parametrize(
    "payload",
    [
        {"amount": 10, "phone": "254712345678"},
        {"order_id": ORDER, "amount": "10", "phone": "254712345678"},
        {"order_id": ORDER, "amount": 10, "phone": None},
        {"order_id": ORDER, "amount": True, "phone": "254712345678"},
    ],
)
def test_a_malformed_payment_request_is_poison(payload: dict[str, object]) -> None:
    with pytest.raises(PoisonMessage):
        PAYMENT_REQUESTS.decode("payment.requested", json.dumps(payload))


def provider_token(db: FakePaymentDb, payments: Payments) -> str:
    """The callback token, recovered from the URL the provider was given."""
    url: str = payments._routes.recorded("mpesa").pushes[-1].callback_url  # type: ignore[attr-defined]
    return url.split("token=")[1]


def test_callback_outcome_series_exist_at_zero_before_any_callback() -> None:
    _, _, _, registry = setup()
    for outcome in ("applied", "duplicate", "rejected"):
        labels = {"provider": "mpesa", "outcome": outcome}
        assert registry.get_sample_value("payment_callbacks_total", labels) == 0
    # Each of Daraja's result codes too: increase() counts the first failure of a kind.
    for code in ("0", "1", "1032", "1037", "2001"):
        labels = {"provider": "mpesa", "result_code": code, "variant": "baseline"}
        assert registry.get_sample_value("payments_total", labels) == 0, code


OVERDUE = timedelta(seconds=60)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_an_overdue_payment_is_settled_by_stk_query_and_emitted_once() -> None:
    payments, db, provider, registry = setup()
    await payments.request_payment(request())
    provider.answer = ProviderOutcome(0, "The service request is processed successfully.")

    assert await payments.reconcile(OVERDUE) == 0  # not overdue yet: the provider is not asked
    assert provider.queries == []

    db.now += OVERDUE
    assert await payments.reconcile(OVERDUE) == 1
    assert provider.queries == ["ws_CO_1"]
    assert only_payment(db).payment.status is PaymentStatus.SUCCEEDED
    assert [key for key, _ in db.outbox] == [PaymentSucceeded.routing_key]
    assert sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="settled")
    assert not sample(
        registry, "payment_reconciliations_total", provider="mpesa", outcome="already_final"
    )
    assert sample(registry, "payment_revenue_total", currency="KES") == 3000

    # The callback arrives after all: a duplicate, nothing emitted or counted twice.
    stored = only_payment(db)
    assert not await payments.apply_callback(
        stored.payment.payment_id,
        provider_token(db, payments),
        "ws_CO_1",
        ProviderOutcome(0, "The service request is processed successfully.", "RCPT1"),
    )
    assert len(db.outbox) == 1
    assert sample(registry, "payment_revenue_total", currency="KES") == 3000


async def test_a_payment_the_provider_still_processes_keeps_waiting_and_is_asked_later() -> None:
    payments, db, provider, registry = setup()
    await payments.request_payment(request())
    db.now += OVERDUE
    assert await payments.reconcile(OVERDUE) == 0
    assert only_payment(db).payment.status is PaymentStatus.AWAITING_CALLBACK
    assert db.outbox == []  # no failure: the seats stay held while the payment may succeed
    assert sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="pending")

    assert await payments.reconcile(OVERDUE) == 0  # just asked: not overdue again yet
    assert len(provider.queries) == 1
    db.now += OVERDUE
    provider.answer = ProviderOutcome(1032, "Request cancelled by user")
    assert await payments.reconcile(OVERDUE) == 1
    assert [key for key, _ in db.outbox] == [PaymentFailed.routing_key]
    assert db.outbox[0][1]["result_code"] == 1032


async def test_a_failed_stk_query_changes_nothing_and_is_counted() -> None:
    payments, db, provider, registry = setup()
    await payments.request_payment(request())
    db.now += OVERDUE
    provider.answer = ProviderTimeout("no answer")
    assert await payments.reconcile(OVERDUE) == 0
    assert only_payment(db).payment.status is PaymentStatus.AWAITING_CALLBACK
    assert db.outbox == []
    assert sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="error") == 1
    assert sample(
        registry,
        "payment_provider_request_duration_seconds_count",
        provider="mpesa",
        operation="stk_query",
        outcome="unavailable",
        variant="baseline",
    )


async def test_a_push_whose_answer_was_lost_is_found_in_the_providers_transactions() -> None:
    payments, db, provider, registry = setup(ProviderTimeout("no answer in 5 s"))
    await payments.request_payment(request())
    assert only_payment(db).payment.status is PaymentStatus.UNKNOWN
    provider.ledger = [
        Charge("RCPT-OTHER", "9999aaaa-bbb", 3000),  # someone else's payment
        Charge("RCPT-9", ORDER[:12], 3000),
    ]
    db.now += OVERDUE
    assert await payments.reconcile(OVERDUE) == 1
    settled = only_payment(db).payment
    assert (settled.status, settled.receipt) == (PaymentStatus.SUCCEEDED, "RCPT-9")
    assert [key for key, _ in db.outbox] == [PaymentSucceeded.routing_key]
    assert provider.queries == []  # no CheckoutRequestID: nothing to query by
    assert sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="settled")


async def test_a_request_recorded_before_a_crash_is_settled_from_the_providers_list() -> None:
    """The process died after the provider took the push and before its answer was written:
    the payment is still INITIATED and the redelivered request is ignored as a duplicate."""
    payments, db, provider, _ = setup()
    async with db.uow() as uow:
        await uow.add(Payment("p-crashed", ORDER, 3000, "KES", "254712345678"), "hash")
        await uow.commit()
    provider.ledger = [Charge("RCPT-1", ORDER[:12], 3000)]
    db.now += OVERDUE
    assert await payments.reconcile(OVERDUE) == 1
    assert only_payment(db).payment.status is PaymentStatus.SUCCEEDED


async def test_a_lost_push_without_a_charge_waits_then_fails_once_its_prompt_is_long_gone() -> None:
    payments, db, _, registry = setup(ProviderTimeout("no answer in 5 s"))
    await payments.request_payment(request())
    db.now += OVERDUE
    assert await payments.reconcile(OVERDUE) == 0  # not found yet: it may still be paid
    assert db.outbox == []
    assert sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="pending")

    db.now += timedelta(minutes=10)  # past abandon_after (10 minutes by default)
    assert await payments.reconcile(OVERDUE) == 1
    failed = only_payment(db).payment
    assert failed.status is PaymentStatus.FAILED
    assert "never completed" in (failed.result_desc or "")
    assert [key for key, _ in db.outbox] == [PaymentFailed.routing_key]


async def test_a_failed_transaction_list_changes_nothing() -> None:
    payments, db, provider, registry = setup(ProviderTimeout("no answer in 5 s"))
    await payments.request_payment(request())
    provider.ledger = ProviderUnavailable("provider answered 503")
    db.now += timedelta(minutes=30)
    assert await payments.reconcile(OVERDUE) == 0
    assert only_payment(db).payment.status is PaymentStatus.UNKNOWN
    assert sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="error")


@pytest.mark.parametrize(
    ("ledger", "outcome"),
    [([], "answered"), (ProviderUnavailable("provider answered 503"), "unavailable")],
    ids=["answered", "unavailable"],
)
async def test_a_transaction_list_call_observes_one_pull_transactions_duration(
    ledger: list[Charge] | Exception, outcome: str
) -> None:
    payments, db, provider, registry = setup(ProviderTimeout("no answer in 5 s"))
    await payments.request_payment(request())  # no CheckoutRequestID: found by list only
    provider.ledger = ledger
    db.now += OVERDUE

    def count(series_outcome: str) -> float:
        return sample(
            registry,
            "payment_provider_request_duration_seconds_count",
            provider="mpesa",
            operation="pull_transactions",
            outcome=series_outcome,
            variant="baseline",
        )

    outcomes = ("answered", "unavailable")
    assert [count(o) for o in outcomes] == [0, 0]
    assert await payments.reconcile(OVERDUE) == 0
    assert {o: count(o) for o in outcomes} == {o: 1 if o == outcome else 0 for o in outcomes}
    assert provider.queries == []  # no stk_query: the one call was the list


def test_the_push_answer_arriving_after_the_verdict_only_records_the_checkout_id() -> None:
    payment = Payment("p", ORDER, 3000, "KES", "254712345678")
    payment.settle(ProviderOutcome(0, "ok", "R1"))
    payment.accepted("ws_CO_late")
    assert (payment.status, payment.checkout_request_id) == (PaymentStatus.SUCCEEDED, "ws_CO_late")


@pytest.mark.parametrize(
    ("outcome", "level"),
    [
        (ProviderOutcome(0, "The service request is processed successfully.", "RCPT1"), "INFO"),
        (ProviderOutcome(1032, "Request cancelled by user"), "WARNING"),
    ],
)
async def test_a_failed_payment_is_logged_as_a_warning(
    outcome: ProviderOutcome, level: str
) -> None:
    payments, db, _, _ = setup()
    await payments.request_payment(request())
    stored = only_payment(db)
    seen: list[tuple[str, str]] = []
    sink = logger.add(lambda m: seen.append((m.record["level"].name, m.record["message"])))
    try:
        await payments.apply_callback(
            stored.payment.payment_id, provider_token(db, payments), "ws_CO_1", outcome
        )
    finally:
        logger.remove(sink)
    assert [lvl for lvl, m in seen if m == "payment settled"] == [level]


async def test_a_callback_that_beats_the_push_s_answer_keeps_its_verdict() -> None:
    """The provider calls back before its answer to the push is recorded: the answer is
    decided again from the settled row, which keeps its verdict and gains the checkout id."""
    payments, db, provider, registry = setup()
    push = provider.stk_push

    async def calling_back_first(request: StkPush) -> str:
        checkout = await push(request)
        payment_id = request.callback_url.removeprefix("http://cb/").split("?")[0]
        outcome = ProviderOutcome(0, "The service request is processed successfully.", "R1")
        assert await payments.apply_callback(
            payment_id, request.callback_url.split("token=")[1], checkout, outcome
        )
        return checkout

    provider.stk_push = calling_back_first  # type: ignore[method-assign]
    await payments.request_payment(request())
    settled = only_payment(db).payment
    assert (settled.status, settled.checkout_request_id, settled.receipt) == (
        PaymentStatus.SUCCEEDED,
        "ws_CO_1",
        "R1",
    )
    assert [key for key, _ in db.outbox] == [PaymentSucceeded.routing_key]
    assert sample(registry, "payment_revenue_total", currency="KES") == 3000


async def test_a_delivery_recorded_by_a_concurrent_one_is_not_charged_again() -> None:
    """Both deliveries found the message unhandled; recording it decides: one payment."""
    payments, db, provider, _ = setup()

    async def not_yet(message_id: str) -> bool:
        return False  # the other delivery had not committed when this one asked

    db.handled = not_yet  # type: ignore[method-assign]
    await payments.request_payment(request("m-1"))
    await payments.request_payment(request("m-1"))
    assert len(provider.pushes) == 1
    assert len(db.state["payments"]) == 1


@pytest.mark.parametrize(
    "verdict",
    [
        ProviderOutcome(0, "The service request is processed successfully.", "R1"),
        ProviderOutcome(1032, "Request cancelled by user"),
    ],
    ids=["succeeded", "failed"],
)
@pytest.mark.parametrize(
    "push_error",
    [
        ProviderTimeout("no answer in 5 s"),
        ProviderUnavailable("provider answered 503"),
        ProviderRejected("500.001.1001", "Unable to lock subscriber"),
    ],
    ids=["timeout", "unavailable", "rejected"],
)
async def test_a_verdict_that_beats_a_failed_push_is_final_and_settled_once(
    verdict: ProviderOutcome, push_error: Exception
) -> None:
    """The provider calls back (or the reconciler settles) before its push call ends, and that
    call then times out or fails: the verdict stands, is emitted and counted once, and the
    reconciler, finding the charge in the provider's list, settles nothing again."""
    payments, db, provider, registry = setup()
    push = provider.stk_push

    async def calling_back_then_failing(request: StkPush) -> str:
        checkout = await push(request)
        payment_id = request.callback_url.removeprefix("http://cb/").split("?")[0]
        token = request.callback_url.split("token=")[1]
        assert await payments.apply_callback(payment_id, token, checkout, verdict)
        raise push_error

    provider.stk_push = calling_back_then_failing  # type: ignore[method-assign]
    await payments.request_payment(request())

    expected = PaymentStatus.SUCCEEDED if verdict.succeeded else PaymentStatus.FAILED
    event = PaymentSucceeded if verdict.succeeded else PaymentFailed
    revenue = 3000 if verdict.succeeded else 0
    code = str(verdict.result_code)

    def results(result_code: str) -> float:
        return sample(
            registry,
            "payments_total",
            provider="mpesa",
            result_code=result_code,
            variant="baseline",
        )

    def check() -> None:
        settled = only_payment(db).payment
        assert (settled.status, settled.result_code, settled.receipt) == (
            expected,
            verdict.result_code,
            verdict.receipt,
        )
        assert [key for key, _ in db.outbox] == [event.routing_key]
        assert sample(registry, "payment_revenue_total", currency="KES") == revenue
        assert results(code) == 1
        assert results("-1") == 0  # the push's failure is not a second result

    check()
    provider.ledger = [Charge("RCPT-9", ORDER[:12], 3000)]
    db.now += timedelta(minutes=30)
    assert await payments.reconcile(OVERDUE) == 0
    check()


def test_a_settled_payment_keeps_its_verdict_whatever_the_push_answers() -> None:
    payment = Payment("p", ORDER, 3000, "KES", "254712345678")
    payment.settle(ProviderOutcome(0, "ok", "R1"))
    before = Payment(**vars(payment))
    payment.outcome_unknown("STK push timed out; reconcile by STK query")
    assert payment == before
    assert not payment.push_failed(ProviderOutcome(-1, "payment provider unavailable: 503"))
    assert payment == before


async def test_a_callback_during_reconciliation_is_not_settled_again_by_it() -> None:
    """The reconciler lists an unsettled payment, the callback settles it while the provider's
    list is being fetched: the reconciler decides again from the locked row and settles nothing."""
    payments, db, provider, registry = setup(ProviderTimeout("no answer in 5 s"))
    await payments.request_payment(request())
    assert only_payment(db).payment.status is PaymentStatus.UNKNOWN
    payment_id = only_payment(db).payment.payment_id
    token = provider_token(db, payments)
    verdict = ProviderOutcome(0, "The service request is processed successfully.", "R1")

    async def calling_back_first(since: datetime, until: datetime) -> list[Charge]:
        assert await payments.apply_callback(payment_id, token, "ws_CO_1", verdict)
        return [Charge("RCPT-9", ORDER[:12], 3000)]

    provider.charges = calling_back_first  # type: ignore[method-assign]
    db.now += OVERDUE
    assert await payments.reconcile(OVERDUE) == 0
    settled = only_payment(db).payment
    assert (settled.status, settled.receipt) == (PaymentStatus.SUCCEEDED, "R1")
    assert [key for key, _ in db.outbox] == [PaymentSucceeded.routing_key]
    assert sample(registry, "payment_revenue_total", currency="KES") == 3000
    # The provider answered, but the reconciliation settled nothing: not counted as settled.
    assert (
        sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="settled") == 0
    )
    assert (
        sample(registry, "payment_reconciliations_total", provider="mpesa", outcome="already_final")
        == 1
    )

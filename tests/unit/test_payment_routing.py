"""Payment routes with fake providers: a new payment goes to the route the flag names (asked
per payment); its callback, STK query and reconciliation go to the provider recorded on it,
whatever the flag says afterwards; a flag naming a route with no provider falls back to
M-Pesa, warned and counted; each route has its own breaker and its own metric series."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from loguru import logger
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_payment.domain.payments import PaymentStatus, ProviderOutcome
from safiri_payment.metrics import PaymentMetrics
from safiri_payment.service_layer.handlers import PaymentRequest, Payments
from safiri_payment.service_layer.provider import (
    Charge,
    ProviderCircuitOpen,
    ProviderTimeout,
    ProviderUnavailable,
    StkPush,
)
from safiri_payment.service_layer.resilience import (
    CircuitState,
    ResiliencePolicy,
    ResilientProvider,
)
from safiri_payment.service_layer.routing import BACKUP, MPESA, Routes

from .fakes import FakePaymentDb

pytestmark = pytest.mark.unit

PAID = ProviderOutcome(0, "The service request is processed successfully.", "RCPT1")


class FakeProvider:
    """A provider that records every call; its checkout ids carry its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pushes: list[StkPush] = []
        self.queries: list[str] = []
        self.charge_reads = 0
        self.push_error: Exception | None = None
        self.answer: ProviderOutcome | None = PAID
        self.ledger: list[Charge] = []

    async def stk_push(self, request: StkPush) -> str:
        self.pushes.append(request)
        if self.push_error is not None:
            raise self.push_error
        return f"ws_CO_{self.name}_{len(self.pushes)}"

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        self.queries.append(checkout_request_id)
        if not checkout_request_id.startswith(f"ws_CO_{self.name}_"):
            # A real provider knows only its own pushes.
            raise ProviderUnavailable(f"{self.name} has no push {checkout_request_id}")
        return self.answer

    async def charges(self, since: datetime, until: datetime) -> list[Charge]:
        self.charge_reads += 1
        return list(self.ledger)


class Flag:
    """The payment-provider flag as the service layer sees it: a callable, asked per order."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.asked: list[str] = []

    def __call__(self, order_id: str) -> str:
        self.asked.append(order_id)
        return self.route


class Setup:
    def __init__(self, *, backup: bool = True, route: str = MPESA) -> None:
        self.db = FakePaymentDb()
        self.registry = CollectorRegistry()
        self.metrics = PaymentMetrics(self.registry)
        self.mpesa = FakeProvider(MPESA)
        self.backup = FakeProvider(BACKUP)
        self.flag = Flag(route)
        providers = {MPESA: self.mpesa, **({BACKUP: self.backup} if backup else {})}
        self.payments = Payments(
            self.db.uow,
            Routes(providers, self.metrics, self.flag),
            self.metrics,
            lambda pid, token: f"http://cb/{pid}?token={token}",
            store=self.db,
        )

    def sample(self, name: str, **labels: str) -> float | None:
        """The sum of ``name``'s samples carrying ``labels`` (whatever other labels they
        have); None when there is none."""
        found = [
            sample.value
            for family in self.registry.collect()
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        return sum(found) if found else None

    def stored(self, order: str):  # type: ignore[no-untyped-def]
        [found] = [s for s in self.db.state["payments"].values() if s.payment.order_id == order]
        return found

    async def pay(self, n: int) -> str:
        order = f"1b4e28ba-2fa1-11d2-883f-0016d3cca4{n:02d}"
        await self.payments.request_payment(
            PaymentRequest(f"m-{n}", order, 1500, "KES", "254712345678", "Nairobi-Mombasa")
        )
        return order

    def token(self, provider: FakeProvider, order: str) -> str:
        stored = self.stored(order)
        [push] = [p for p in provider.pushes if stored.payment.payment_id in p.callback_url]
        return push.callback_url.split("token=")[1]


async def test_a_new_payment_goes_to_the_route_the_flag_names_and_records_it(
    spans: InMemorySpanExporter,
) -> None:
    s = Setup(route=BACKUP)
    order = await s.pay(1)
    assert [p.account_reference for p in s.backup.pushes] == [order[:12]]
    assert s.mpesa.pushes == []
    stored = s.stored(order)
    assert stored.payment.provider == BACKUP
    assert stored.payment.checkout_request_id == "ws_CO_backup_1"
    assert s.flag.asked == [order]  # asked once, with the order as its targeting key
    [request] = [span for span in spans.get_finished_spans() if span.name == "request_payment"]
    assert request.attributes["safiri.payment.provider"] == BACKUP
    [push] = [span for span in spans.get_finished_spans() if span.name == "provider.stk_push"]
    assert push.attributes["safiri.payment.provider"] == BACKUP
    assert (
        s.sample(
            "payment_provider_request_duration_seconds_count",
            provider=BACKUP,
            operation="stk_push",
            outcome="accepted",
            variant="baseline",
        )
        == 1
    )


async def test_the_flag_is_asked_for_each_payment() -> None:
    s = Setup()
    first = await s.pay(1)
    s.flag.route = BACKUP
    second = await s.pay(2)
    s.flag.route = MPESA
    third = await s.pay(3)
    assert [s.stored(o).payment.provider for o in (first, second, third)] == [
        MPESA,
        BACKUP,
        MPESA,
    ]
    assert (len(s.mpesa.pushes), len(s.backup.pushes)) == (2, 1)


async def test_a_redelivered_request_neither_asks_the_flag_nor_pushes_again() -> None:
    s = Setup()
    await s.pay(1)
    await s.pay(1)
    assert len(s.flag.asked) == 1 and len(s.mpesa.pushes) == 1


async def test_after_the_flag_flips_the_stk_query_goes_to_the_provider_that_took_the_payment() -> (
    None
):
    s = Setup(route=MPESA)
    order = await s.pay(1)
    s.flag.route = BACKUP
    s.db.now += timedelta(minutes=2)
    assert await s.payments.reconcile(timedelta(minutes=1)) == 1
    assert s.mpesa.queries == ["ws_CO_mpesa_1"]
    assert s.backup.queries == []
    assert s.stored(order).payment.status is PaymentStatus.SUCCEEDED
    assert s.sample("payment_reconciliations_total", provider=MPESA, outcome="settled") == 1
    assert s.sample("payment_reconciliations_total", provider=BACKUP, outcome="settled") == 0
    assert s.sample("payments_total", provider=MPESA, result_code="0", variant="baseline") == 1


async def test_a_backup_payment_is_reconciled_at_the_backup_after_switching_back() -> None:
    s = Setup(route=BACKUP)
    order = await s.pay(1)
    s.flag.route = MPESA
    s.db.now += timedelta(minutes=2)
    assert await s.payments.reconcile(timedelta(minutes=1)) == 1
    assert (s.backup.queries, s.mpesa.queries) == (["ws_CO_backup_1"], [])
    assert s.stored(order).payment.status is PaymentStatus.SUCCEEDED
    assert s.sample("payments_total", provider=BACKUP, result_code="0", variant="baseline") == 1
    assert s.sample("payments_total", provider=MPESA, result_code="0", variant="baseline") == 0


async def test_an_unanswered_push_is_looked_for_in_its_own_providers_transactions() -> None:
    s = Setup(route=BACKUP)
    s.backup.push_error = ProviderTimeout("no answer")
    order = await s.pay(1)
    assert s.stored(order).payment.status is PaymentStatus.UNKNOWN
    s.backup.ledger = [Charge("RCPTB1", order[:12], 1500)]
    s.flag.route = MPESA
    s.db.now += timedelta(minutes=2)
    assert await s.payments.reconcile(timedelta(minutes=1)) == 1
    assert (s.backup.charge_reads, s.mpesa.charge_reads) == (1, 0)
    assert s.stored(order).payment.receipt == "RCPTB1"


async def test_a_callback_after_the_flag_flipped_is_counted_for_the_provider_that_took_it() -> None:
    s = Setup(route=BACKUP)
    order = await s.pay(1)
    s.flag.route = MPESA
    stored = s.stored(order)
    token = s.token(s.backup, order)
    assert await s.payments.apply_callback(stored.payment.payment_id, token, "ws_CO_backup_1", PAID)
    assert s.stored(order).payment.status is PaymentStatus.SUCCEEDED
    assert s.sample("payment_callbacks_total", provider=BACKUP, outcome="applied") == 1
    assert s.sample("payment_callbacks_total", provider=MPESA, outcome="applied") == 0
    assert s.sample("payments_total", provider=BACKUP, result_code="0", variant="baseline") == 1


async def test_with_no_backup_configured_the_flag_falls_back_to_mpesa_warned_and_counted() -> None:
    s = Setup(backup=False, route=BACKUP)
    assert s.sample("payment_route_fallbacks_total", provider=BACKUP) == 0
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")
    try:
        order = await s.pay(1)
    finally:
        logger.remove(sink)
    assert s.stored(order).payment.provider == MPESA
    assert len(s.mpesa.pushes) == 1
    assert s.sample("payment_route_fallbacks_total", provider=BACKUP) == 1
    assert any("payment-provider names a route with no provider" in line for line in lines)


async def test_a_route_nobody_knows_falls_back_and_is_counted_without_its_name() -> None:
    s = Setup(route="paypal-2026-experimental")
    order = await s.pay(1)
    assert s.stored(order).payment.provider == MPESA
    assert s.sample("payment_route_fallbacks_total", provider="unknown") == 1
    assert s.sample("payment_route_fallbacks_total", provider="paypal-2026-experimental") is None


async def test_a_payment_recorded_for_a_route_no_longer_configured_is_asked_about_again() -> None:
    with_backup = Setup(route=BACKUP)
    order = await with_backup.pay(1)
    # The same database, served by a replica without the backup route.
    s = Setup(backup=False)
    s.db = with_backup.db
    s.payments = Payments(
        s.db.uow,
        Routes({MPESA: s.mpesa}, s.metrics, s.flag),
        s.metrics,
        lambda p, t: p,
        store=s.db,
    )
    s.db.now += timedelta(minutes=2)
    assert await s.payments.reconcile(timedelta(minutes=1)) == 0
    assert s.mpesa.queries == []  # never asked about a payment it did not take
    assert s.stored(order).payment.status is PaymentStatus.AWAITING_CALLBACK
    assert s.sample("payment_reconciliations_total", provider=BACKUP, outcome="error") == 1


async def test_each_route_has_its_own_breaker() -> None:
    s = Setup(route=MPESA)
    policy = ResiliencePolicy(breaker_threshold=2, attempts=1)
    s.mpesa.push_error = ProviderUnavailable("503")
    mpesa = ResilientProvider(s.mpesa, s.metrics, policy)
    backup = ResilientProvider(s.backup, s.metrics, policy)
    s.payments = Payments(
        s.db.uow,
        Routes({MPESA: mpesa, BACKUP: backup}, s.metrics, s.flag),
        s.metrics,
        lambda p, t: f"http://cb/{p}?token={t}",
        store=s.db,
    )
    for n in range(3):
        await s.pay(n)
    assert mpesa.circuit_state is CircuitState.OPEN
    assert len(s.mpesa.pushes) == 2  # the third failed fast
    assert "circuit breaker open" in (
        s.stored("1b4e28ba-2fa1-11d2-883f-0016d3cca402").payment.result_desc or ""
    )
    s.flag.route = BACKUP
    order = await s.pay(4)
    assert s.stored(order).payment.status is PaymentStatus.AWAITING_CALLBACK
    assert backup.circuit_state is CircuitState.CLOSED
    assert s.sample("payment_provider_circuit_state", provider=MPESA) == CircuitState.OPEN
    assert s.sample("payment_provider_circuit_state", provider=BACKUP) == CircuitState.CLOSED
    with pytest.raises(ProviderCircuitOpen):
        await mpesa.stk_query("ws_CO_mpesa_1")


def test_routes_refuse_a_default_without_a_provider_and_a_misnamed_provider() -> None:
    metrics = PaymentMetrics(CollectorRegistry())
    with pytest.raises(ValueError, match="default route"):
        Routes({BACKUP: FakeProvider(BACKUP)}, metrics)
    with pytest.raises(ValueError, match="named"):
        Routes({MPESA: FakeProvider(MPESA), BACKUP: FakeProvider(MPESA)}, metrics)


def test_every_routes_series_starts_at_zero() -> None:
    s = Setup()
    for route in (MPESA, BACKUP):
        assert s.sample("payments_total", provider=route, result_code="0", variant="baseline") == 0
        assert s.sample("payment_callbacks_total", provider=route, outcome="rejected") == 0
        assert s.sample("payment_route_fallbacks_total", provider=route) == 0

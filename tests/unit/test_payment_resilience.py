"""The provider behind purgatory's breaker and tenacity's retries: when a call is repeated, when
the breaker opens and closes, and that every transition is a metric, a span event and a log line."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loguru import logger
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_payment.domain.payments import PaymentStatus, ProviderOutcome
from safiri_payment.metrics import PaymentMetrics
from safiri_payment.service_layer.handlers import PaymentRequest, Payments
from safiri_payment.service_layer.provider import (
    ProviderCircuitOpen,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    StkPush,
)
from safiri_payment.service_layer.resilience import (
    CircuitState,
    ResiliencePolicy,
    ResilientProvider,
)
from safiri_telemetry import business_span
from tests.conftest import eventually

from .fakes import FakePaymentDb

pytestmark = pytest.mark.unit
PUSH = StkPush(3000, "254712345678", "order-1", "Nairobi", "http://cb/p?token=t")


class ScriptedProvider:
    """Answers each call with the next scripted item: an exception to raise or a value."""

    name = "mpesa"

    def __init__(self, *script: object) -> None:
        self.script = list(script)
        self.calls = 0

    def _next(self) -> object:
        self.calls += 1
        item = self.script.pop(0) if self.script else "ws_CO_ok"
        if isinstance(item, Exception):
            raise item
        return item

    async def stk_push(self, request: StkPush) -> str:
        return str(self._next())

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        item = self._next()
        return item if isinstance(item, ProviderOutcome) else None


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def resilient(
    provider: ScriptedProvider, **policy: float
) -> tuple[ResilientProvider, CollectorRegistry, Sleeps]:
    registry, sleeps = CollectorRegistry(), Sleeps()
    settings = {"breaker_threshold": 3, "breaker_reset_seconds": 30.0, "attempts": 3, **policy}
    wrapped = ResilientProvider(
        provider,
        PaymentMetrics(registry),
        ResiliencePolicy(**settings),  # type: ignore[arg-type]
        sleep=sleeps,
    )
    return wrapped, registry, sleeps


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def log_lines() -> Iterator[list[dict[str, object]]]:
    lines: list[dict[str, object]] = []
    sink = logger.add(lambda m: lines.append({**m.record["extra"], "msg": m.record["message"]}))
    yield lines
    logger.remove(sink)


async def test_a_push_that_was_never_sent_is_retried_with_full_jitter() -> None:
    provider = ScriptedProvider(ProviderUnreachable("refused"), ProviderUnreachable("refused"))
    wrapped, registry, sleeps = resilient(
        provider, backoff_base_seconds=0.5, backoff_max_seconds=4.0
    )
    assert await wrapped.stk_push(PUSH) == "ws_CO_ok"
    assert provider.calls == 3
    # Full jitter: each wait anywhere between 0 and the exponential bound for its attempt.
    assert len(sleeps.waits) == 2
    assert 0 <= sleeps.waits[0] <= 0.5 * 2**1
    assert 0 <= sleeps.waits[1] <= 0.5 * 2**2
    assert sample(
        registry, "payment_provider_retries_total", provider="mpesa", operation="stk_push"
    )
    assert (
        sample(registry, "payment_provider_retries_total", provider="mpesa", operation="stk_push")
        == 2
    )


@pytest.mark.parametrize(
    "error",
    [
        ProviderTimeout("no answer in 5 s"),  # may have been taken: a second push may charge twice
        ProviderUnavailable("provider answered 503"),
        ProviderRejected("400.002.02", "Bad Request - Invalid Amount"),
    ],
    ids=["timeout", "5xx", "rejected"],
)
async def test_a_push_that_may_have_been_sent_or_was_refused_is_not_repeated(
    error: Exception,
) -> None:
    provider = ScriptedProvider(error)
    wrapped, registry, sleeps = resilient(provider)
    with pytest.raises(type(error)):
        await wrapped.stk_push(PUSH)
    assert provider.calls == 1
    assert sleeps.waits == []
    assert (
        sample(registry, "payment_provider_retries_total", provider="mpesa", operation="stk_push")
        == 0
    )


async def test_a_query_only_reads_so_it_is_retried_on_any_provider_failure() -> None:
    settled = ProviderOutcome(0, "processed")
    provider = ScriptedProvider(ProviderTimeout("slow"), ProviderUnavailable("503"), settled)
    wrapped, registry, _ = resilient(provider)
    assert await wrapped.stk_query("ws_CO_1") == settled
    assert provider.calls == 3
    assert (
        sample(registry, "payment_provider_retries_total", provider="mpesa", operation="stk_query")
        == 2
    )


async def test_the_breaker_opens_after_consecutive_failures_and_then_fails_fast(
    spans: InMemorySpanExporter, log_lines: list[dict[str, object]]
) -> None:
    provider = ScriptedProvider(*[ProviderUnavailable("503")] * 3)
    wrapped, registry, _ = resilient(provider, breaker_threshold=3)
    assert sample(registry, "payment_provider_circuit_state", provider="mpesa") == 0

    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await wrapped.stk_push(PUSH)
    assert wrapped.circuit_state is CircuitState.CLOSED
    with business_span("provider.stk_push", {}), pytest.raises(ProviderUnavailable):
        await wrapped.stk_push(PUSH)  # the third failure in a row opens it
    assert wrapped.circuit_state is CircuitState.OPEN
    assert sample(registry, "payment_provider_circuit_state", provider="mpesa") == 2

    with pytest.raises(ProviderCircuitOpen):
        await wrapped.stk_push(PUSH)
    assert provider.calls == 3  # the open breaker did not call the provider

    (span,) = [s for s in spans.get_finished_spans() if s.name == "provider.stk_push"]
    (event,) = span.events
    assert event.name == "circuit_breaker.state_change"
    assert dict(event.attributes or {}) == {
        "safiri.circuit.name": "mpesa",
        "safiri.circuit.previous_state": "closed",
        "safiri.circuit.state": "open",
    }
    opened = [line for line in log_lines if line.get("state") == "open"]
    assert len(opened) == 1
    assert opened[0]["previous_state"] == "closed"
    assert (
        sample(
            registry, "payment_provider_circuit_transitions_total", provider="mpesa", state="open"
        )
        == 1
    )


async def test_after_the_reset_time_one_success_closes_the_breaker() -> None:
    provider = ScriptedProvider(ProviderUnavailable("503"), ProviderTimeout("slow"))
    wrapped, registry, _ = resilient(provider, breaker_threshold=2, breaker_reset_seconds=0.05)
    for _ in range(2):
        with pytest.raises((ProviderUnavailable, ProviderTimeout)):
            await wrapped.stk_push(PUSH)
    assert wrapped.circuit_state is CircuitState.OPEN

    async def let_through() -> str | None:  # polled past purgatory's wall-clock reset time
        try:
            return await wrapped.stk_push(PUSH)
        except ProviderCircuitOpen:
            return None

    answer = await eventually(
        let_through, timeout=5, interval=0.01, what="the breaker to let a call through"
    )
    assert answer == "ws_CO_ok"
    assert wrapped.circuit_state is CircuitState.CLOSED
    assert sample(registry, "payment_provider_circuit_state", provider="mpesa") == 0
    for state in ("half_open", "closed"):
        assert sample(
            registry, "payment_provider_circuit_transitions_total", provider="mpesa", state=state
        )


async def test_a_provider_saying_no_does_not_count_towards_opening_the_breaker() -> None:
    rejected = ProviderRejected("400.002.02", "Bad Request - Invalid Amount")
    provider = ScriptedProvider(*[rejected] * 5)
    wrapped, _, _ = resilient(provider, breaker_threshold=2)
    for _ in range(5):
        with pytest.raises(ProviderRejected):
            await wrapped.stk_push(PUSH)
    assert wrapped.circuit_state is CircuitState.CLOSED


async def test_with_the_breaker_open_a_payment_fails_at_once_and_the_customer_is_not_charged() -> (
    None
):
    provider = ScriptedProvider(*[ProviderUnavailable("503")] * 2)
    registry, db = CollectorRegistry(), FakePaymentDb()
    metrics = PaymentMetrics(registry)
    wrapped = ResilientProvider(provider, metrics, ResiliencePolicy(breaker_threshold=2))
    payments = Payments(db.uow, wrapped, metrics, lambda p, t: f"http://cb/{p}", store=db)
    for n in range(3):
        order = f"1b4e28ba-2fa1-11d2-883f-0016d3cca42{n}"
        await payments.request_payment(
            PaymentRequest(f"m-{n}", order, 3000, "KES", "254712345678", "Nairobi-Mombasa")
        )
    assert provider.calls == 2  # the third payment never reached the provider
    statuses = [s.payment.status for s in db.state["payments"].values()]
    assert statuses == [PaymentStatus.FAILED] * 3
    reasons = [s.payment.result_desc for s in db.state["payments"].values()]
    assert "circuit breaker open" in reasons[2]
    assert (
        sample(
            registry,
            "payment_provider_request_duration_seconds_count",
            provider="mpesa",
            operation="stk_push",
            outcome="circuit_open",
            variant="baseline",
        )
        == 1
    )

"""The provider-policy canary in payment: which arm a payment is in, what that arm changes, and
that the arm is on the payment's metrics and spans for its whole life.

- The flag is asked once per payment with the order as targeting key and the gateway's client
  (W3C baggage ``safiri.client``) as attribute; the shipped flag file sends about 1 % of
  orders, and every order of a listed client, to the canary.
- The canary arm calls the provider through its own client (a shorter timeout) and retry
  policy (exponential backoff with jitter, a deadline); the baseline arm is today's policy.
- ``payments_total`` and the provider-call histogram carry ``variant``; the payment's spans
  ``safiri.canary.variant``; a callback or reconciliation counts the payment in the arm that
  took it, even after the flag changed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_flags import Flags
from safiri_payment.adapters.mpesa import DarajaClient
from safiri_payment.bootstrap import choose_variant
from safiri_payment.domain.payments import PaymentStatus, ProviderOutcome
from safiri_payment.entrypoints.keys import FLAGS
from safiri_payment.metrics import PaymentMetrics
from safiri_payment.service_layer.canary import CLIENT_BAGGAGE, FLAG, VARIANT_BAGGAGE
from safiri_payment.service_layer.handlers import Payments
from safiri_payment.service_layer.provider import (
    ProviderTimeout,
    ProviderUnreachable,
    StkPush,
)
from safiri_payment.service_layer.resilience import (
    CANARY_POLICY,
    ResiliencePolicy,
    ResilientProvider,
)
from safiri_telemetry import Telemetry
from tests.conftest import serving

from .fakes import FakePaymentDb
from .test_payment_handlers import ORDER, FakeProvider, only_payment, request

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
FLAG_FILE = REPO / "deploy" / "flags" / "flags.json"
PUSH = StkPush(3000, "254712345678", "order-1", "Nairobi", "http://cb/p?token=t")


class Chooser:
    """The flag as the service layer sees it: records what it was asked, answers ``answer``."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str | None]] = []

    def __call__(self, order_id: str, client: str | None) -> str:
        self.asked.append((order_id, client))
        return self.answer


def setup(
    chooser: Chooser | None, provider: FakeProvider | None = None
) -> tuple[Payments, FakePaymentDb, FakeProvider, CollectorRegistry]:
    db, registry = FakePaymentDb(), CollectorRegistry()
    provider = provider or FakeProvider()
    payments = Payments(
        db.uow,
        provider,
        PaymentMetrics(registry),
        lambda pid, token: f"http://cb/{pid}?token={token}",
        store=db,
        choose_variant=chooser,
    )
    return payments, db, provider, registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def pushes(registry: CollectorRegistry, variant: str, outcome: str = "accepted") -> float:
    return sample(
        registry,
        "payment_provider_request_duration_seconds_count",
        provider="mpesa",
        operation="stk_push",
        outcome=outcome,
        variant=variant,
    )


def results(registry: CollectorRegistry, variant: str, code: str) -> float:
    return sample(registry, "payments_total", provider="mpesa", result_code=code, variant=variant)


@pytest.fixture
def client_in_baggage() -> Iterator[str]:
    """The gateway's client, as the consumer span makes it current from the message."""
    token = otel_context.attach(baggage.set_baggage(CLIENT_BAGGAGE, "client-7"))
    yield "client-7"
    otel_context.detach(token)


def token_of(provider: FakeProvider) -> str:
    return provider.pushes[-1].callback_url.split("token=")[1]


# ----------------------------------------------------------------------- payments by arm


async def test_the_flag_is_asked_once_per_payment_with_the_order_and_the_gateway_s_client(
    client_in_baggage: str, spans: InMemorySpanExporter
) -> None:
    chooser = Chooser("canary")
    payments, _, _, registry = setup(chooser)
    await payments.request_payment(request())
    assert chooser.asked == [(ORDER, client_in_baggage)]
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["request_payment"].attributes["safiri.canary.variant"] == "canary"
    assert by_name["provider.stk_push"].attributes["safiri.canary.variant"] == "canary"
    assert (pushes(registry, "canary"), pushes(registry, "baseline")) == (1, 0)


async def test_a_callback_counts_the_payment_in_the_arm_that_took_it_after_the_flag_changed(
    spans: InMemorySpanExporter,
) -> None:
    chooser = Chooser("canary")
    payments, db, provider, registry = setup(chooser)
    await payments.request_payment(request())
    chooser.answer = "baseline"  # rolled back while the customer reads the prompt
    stored = only_payment(db)
    outcome = ProviderOutcome(1, "The balance is insufficient for the transaction.")
    assert await payments.apply_callback(
        stored.payment.payment_id, token_of(provider), "ws_CO_1", outcome
    )
    assert (results(registry, "canary", "1"), results(registry, "baseline", "1")) == (1, 0)
    (callback,) = [s for s in spans.get_finished_spans() if s.name == "handle_callback"]
    assert callback.attributes["safiri.canary.variant"] == "canary"
    assert len(chooser.asked) == 1  # the flag is not asked again for an existing payment


async def test_a_reconciled_payment_is_asked_about_and_counted_in_its_arm() -> None:
    chooser = Chooser("canary")
    provider = FakeProvider(ProviderTimeout("no answer in 3 s"))
    payments, db, _, registry = setup(chooser, provider)
    await payments.request_payment(request())
    assert pushes(registry, "canary", outcome="unknown") == 1
    chooser.answer = "baseline"
    stored = only_payment(db)
    provider.ledger = []
    db.now += payments._abandon_after  # nothing in the provider's list, long after
    assert await payments.reconcile(timedelta(0)) == 1
    assert only_payment(db).payment.status is PaymentStatus.FAILED
    assert stored.payment.payment_id == only_payment(db).payment.payment_id
    assert (results(registry, "canary", "-1"), results(registry, "baseline", "-1")) == (1, 0)
    assert (
        sample(
            registry,
            "payment_provider_request_duration_seconds_count",
            provider="mpesa",
            operation="pull_transactions",
            outcome="answered",
            variant="canary",
        )
        == 1
    )


@pytest.mark.parametrize("answer", ["baseline", "experimental", ""])
async def test_anything_but_the_canary_is_the_baseline(answer: str) -> None:
    payments, _, _, registry = setup(Chooser(answer))
    await payments.request_payment(request())
    assert (pushes(registry, "baseline"), pushes(registry, "canary")) == (1, 0)


async def test_without_a_flag_every_payment_is_the_baseline_and_no_baggage_is_needed() -> None:
    payments, _, _, registry = setup(None)
    await payments.request_payment(request())
    assert pushes(registry, "baseline") == 1


def test_both_arms_result_series_start_at_zero() -> None:
    _, _, _, registry = setup(None)
    for variant in ("baseline", "canary"):
        for code in ("0", "1", "1032", "1037", "2001"):
            labels = {"provider": "mpesa", "result_code": code, "variant": variant}
            assert registry.get_sample_value("payments_total", labels) == 0, labels


# ------------------------------------------------------------------- what the arm changes


class Scripted:
    """A provider answering each call with the next scripted item (exception or value), each
    call taking ``delay`` seconds."""

    def __init__(self, *script: object, delay: float = 0.0) -> None:
        self.name = "mpesa"
        self.script = list(script)
        self.calls = 0
        self.delay = delay

    async def stk_push(self, request: StkPush) -> str:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        item = self.script.pop(0) if self.script else "ws_CO_ok"
        if isinstance(item, Exception):
            raise item
        return str(item)

    async def stk_query(self, checkout_request_id: str) -> ProviderOutcome | None:
        raise NotImplementedError

    async def charges(self, since: Any, until: Any) -> list[Any]:
        raise NotImplementedError


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def arms(
    baseline: Scripted, canary: Scripted, canary_policy: ResiliencePolicy = CANARY_POLICY
) -> tuple[ResilientProvider, Sleeps]:
    sleeps = Sleeps()
    wrapped = ResilientProvider(
        baseline,
        PaymentMetrics(CollectorRegistry()),
        ResiliencePolicy(breaker_threshold=50, attempts=3),
        sleep=sleeps,
        canary=(canary, canary_policy),
    )
    return wrapped, sleeps


def refused(n: int) -> list[Exception]:
    return [ProviderUnreachable("connection refused") for _ in range(n)]


def in_variant(variant: str) -> Any:
    return otel_context.attach(baggage.set_baggage(VARIANT_BAGGAGE, variant))


async def test_the_canary_arm_calls_its_own_client_with_exponential_backoff_and_jitter() -> None:
    baseline, canary = Scripted(), Scripted(*refused(3))
    wrapped, sleeps = arms(baseline, canary)
    token = in_variant("canary")
    try:
        assert await wrapped.stk_push(PUSH) == "ws_CO_ok"
    finally:
        otel_context.detach(token)
    assert (baseline.calls, canary.calls) == (0, 4)  # 4 attempts, not the baseline's 3
    # 0.1 s doubling per attempt (capped at 1 s), plus up to 0.1 s of jitter.
    assert len(sleeps.waits) == 3
    for n, wait in enumerate(sleeps.waits):
        assert 0.1 * 2**n <= wait <= 0.1 * 2**n + 0.1, sleeps.waits


async def test_the_baseline_arm_keeps_today_s_policy() -> None:
    baseline, canary = Scripted(*refused(3)), Scripted()
    wrapped, sleeps = arms(baseline, canary)
    with pytest.raises(ProviderUnreachable):
        await wrapped.stk_push(PUSH)  # no baggage: the baseline
    assert (baseline.calls, canary.calls) == (3, 0)
    assert len(sleeps.waits) == 2  # full jitter: anywhere between 0 and 0.2 * 2^n
    assert all(0 <= w <= 0.2 * 2 ** (n + 1) for n, w in enumerate(sleeps.waits)), sleeps.waits


async def test_the_canary_starts_no_attempt_after_its_deadline() -> None:
    policy = ResiliencePolicy(
        attempts=50,
        backoff="exponential_jitter",
        backoff_base_seconds=0.01,
        backoff_max_seconds=0.01,
        deadline_seconds=0.2,
    )
    canary = Scripted(*refused(50), delay=0.05)
    wrapped, _ = arms(Scripted(), canary, policy)
    token = in_variant("canary")
    try:
        with pytest.raises(ProviderUnreachable):
            await wrapped.stk_push(PUSH)
    finally:
        otel_context.detach(token)
    # Each attempt takes 0.05 s (the fake sleeps nothing): 4 or 5 fit in 0.2 s, never 50.
    assert 2 <= canary.calls <= 5, canary.calls


def test_the_canary_policy_is_shorter_and_bounded() -> None:
    assert CANARY_POLICY.attempt_timeout_seconds is not None
    assert CANARY_POLICY.attempt_timeout_seconds < 5.0  # the baseline's default timeout
    assert CANARY_POLICY.deadline_seconds is not None
    assert CANARY_POLICY.backoff == "exponential_jitter"


# ------------------------------------------------------------------ the Daraja client's arm


@pytest_asyncio.fixture
async def daraja() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Daraja's token and STK push, the push answering after 0.3 s; what it saw."""
    seen: dict[str, Any] = {"oauth": 0, "headers": []}

    async def oauth(request: web.Request) -> web.Response:
        seen["oauth"] += 1
        return web.json_response({"access_token": "tok", "expires_in": "3599"})

    async def push(request: web.Request) -> web.Response:
        seen["headers"].append(dict(request.headers))
        await asyncio.sleep(0.3)
        return web.json_response({"ResponseCode": "0", "CheckoutRequestID": "ws_CO_1"})

    app = web.Application()
    app.router.add_get("/oauth/v1/generate", oauth)
    app.router.add_post("/mpesa/stkpush/v1/processrequest", push)
    async with serving(app) as url:
        yield url, seen


async def test_a_shorter_timeout_sibling_shares_the_token_and_gives_up_sooner(
    daraja: tuple[str, dict[str, Any]],
) -> None:
    url, seen = daraja
    telemetry = Telemetry.setup("payment-canary", install_global=False)
    async with telemetry.client_session() as session:
        client = DarajaClient(session, url, "k", "s", "174379", "p", 5.0)
        sibling = client.with_timeout(0.1)
        token = otel_context.attach(baggage.set_baggage(CLIENT_BAGGAGE, "client-7"))
        try:
            assert await client.stk_push(PUSH) == "ws_CO_1"
            with pytest.raises(ProviderTimeout, match=r"0\.1 s"):
                await sibling.stk_push(PUSH)
        finally:
            otel_context.detach(token)
    assert seen["oauth"] == 1  # one access token for both
    # The trace goes on to the provider; Safiri's baggage (the client, the arm) does not.
    assert all("traceparent" in h for h in seen["headers"])
    assert not any("baggage" in h for h in seen["headers"]), seen["headers"]


# ----------------------------------------------------------------------- the shipped flag


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    shutil.copy(FLAG_FILE, path)
    return path


def target(path: Path, clients: list[str]) -> None:
    document = json.loads(path.read_text())
    document["flags"][FLAG]["targeting"]["if"][0]["in"][1] = clients
    path.write_text(json.dumps(document))


def chosen(flag_file: Path, client: str | None, orders: int) -> list[str]:
    app = web.Application()
    app[FLAGS] = Flags.start(flag_file, service="payment", registry=CollectorRegistry())
    try:
        choose = choose_variant(app)
        return [choose(f"order-{n}", client) for n in range(orders)]
    finally:
        app[FLAGS].shutdown()


def test_the_shipped_flag_sends_about_one_percent_of_orders_to_the_canary_stably(
    flag_file: Path,
) -> None:
    first = chosen(flag_file, "client-7", 4000)
    assert first == chosen(flag_file, "client-7", 4000)  # each order stays in its arm
    assert set(first) == {"baseline", "canary"}
    share = first.count("canary") / len(first)
    assert 0.003 < share < 0.02, share
    assert chosen(flag_file, None, 4000) == first  # the bucket is the order's, not the client's


def test_a_listed_client_always_gets_the_canary_and_the_others_keep_the_rollout(
    flag_file: Path,
) -> None:
    target(flag_file, ["client-7"])
    assert set(chosen(flag_file, "client-7", 300)) == {"canary"}
    others = chosen(flag_file, "client-8", 4000)
    assert others.count("canary") / len(others) < 0.02


def test_both_arms_accepted_push_latency_series_start_at_zero() -> None:
    _, _, _, registry = setup(None)
    for variant in ("baseline", "canary"):
        assert pushes(registry, variant) == 0
        labels = {
            "provider": "mpesa",
            "operation": "stk_push",
            "outcome": "accepted",
            "variant": variant,
            "le": "+Inf",
        }
        assert (
            registry.get_sample_value("payment_provider_request_duration_seconds_bucket", labels)
            == 0
        ), variant

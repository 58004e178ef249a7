"""Payment's Daraja client, behind its breaker and retries, against the real simulator on loopback:
STK query answers, a lost callback found by query, an outage opening the breaker, and a
connection refused retried; and against a stand-in provider on loopback for what the simulator
never sends (a malformed Pull Transactions row)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from loguru import logger
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from safiri_mpesa_sim.entrypoints.daraja_protocol import SERVICE_UNAVAILABLE
from safiri_mpesa_sim.faults import CallbackFault, Faults, Outage, StkQueryFault
from safiri_mpesa_sim.inprocess import RunningSimulator, run_in_process
from safiri_mpesa_sim.ledger import CallbackDelivery
from safiri_mpesa_sim.settings import Settings as SimulatorSettings
from safiri_payment.adapters.mpesa import DarajaClient
from safiri_payment.domain.payments import ProviderOutcome
from safiri_payment.metrics import PaymentMetrics
from safiri_payment.service_layer.provider import (
    Charge,
    ProviderCircuitOpen,
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
from safiri_telemetry import Telemetry
from tests.conftest import eventually, free_port, serving

pytestmark = pytest.mark.integration
SIM = SimulatorSettings(callback_delay=0.3)


def simulator_telemetry() -> Telemetry:
    """The simulator's telemetry for a test: spans in memory, logs to a buffer, not global."""
    return Telemetry.setup(
        "mpesa-simulator",
        install_global=False,
        env={"OTEL_SDK_DISABLED": "false"},
        span_processor=SimpleSpanProcessor(InMemorySpanExporter()),
        log_stream=io.StringIO(),
    )


@pytest.fixture(scope="module")
def telemetry() -> Telemetry:
    return simulator_telemetry()


@pytest.fixture
async def sim(telemetry: Telemetry) -> AsyncIterator[RunningSimulator]:
    async with run_in_process(SIM, telemetry) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def daraja(session: aiohttp.ClientSession, base_url: str) -> DarajaClient:
    return DarajaClient(
        session,
        base_url,
        SIM.consumer_key,
        SIM.consumer_secret.value,
        SIM.shortcode,
        SIM.passkey.value,
        timeout=2.0,
    )


def push(phone: str = "254712345678") -> StkPush:
    # Nothing listens on the callback URL: these tests read results by STK query only.
    return StkPush(1500, phone, "order-12345", "Nairobi", "http://127.0.0.1:9/callback?token=t")


async def test_stk_query_is_pending_until_the_customer_answers_then_gives_the_result(
    sim: RunningSimulator, session: aiohttp.ClientSession, spans: InMemorySpanExporter
) -> None:
    client = daraja(session, sim.base_url)
    checkout = await client.stk_push(push("254700001032"))  # the customer cancels
    spans.clear()
    assert await client.stk_query(checkout) is None
    # Daraja's "not yet" is an HTTP 500: the span says it is no failure for a trace reader.
    (answer,) = [s for s in spans.get_finished_spans() if "stkpushquery" in s.name]
    assert (answer.attributes or {}).get("safiri.payment.pending") is True
    outcome = await eventually(
        lambda: client.stk_query(checkout), timeout=5, what="the STK query's final answer"
    )
    assert outcome.result_code == 1032
    assert not outcome.succeeded


async def test_a_lost_callback_is_found_by_query_and_the_charge_is_in_the_ledger(
    sim: RunningSimulator, session: aiohttp.ClientSession, telemetry: Telemetry
) -> None:
    lost = {"outcome": "lost"}
    before = telemetry.registry.get_sample_value("mpesa_sim_callbacks_total", lost) or 0.0
    sim.faults.set(Faults(callbacks=CallbackFault.LOST))
    client = daraja(session, sim.base_url)
    checkout = await client.stk_push(push())
    outcome = await eventually(
        lambda: client.stk_query(checkout), timeout=5, what="the STK query's final answer"
    )
    assert outcome == ProviderOutcome(0, outcome.result_desc)
    entry = sim.ledger.get(checkout)
    assert entry.charged
    assert entry.callback is CallbackDelivery.NOT_SENT
    assert telemetry.registry.get_sample_value("mpesa_sim_callbacks_total", lost) == before + 1


async def test_the_transaction_list_shows_each_charge_under_its_account_reference(
    sim: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    client = daraja(session, sim.base_url)
    before = datetime.now(UTC) - timedelta(seconds=1)
    paid = await client.stk_push(push())
    await client.stk_push(push("254700000001"))  # insufficient funds: no charge
    await sim.notifier.join()
    charges = await client.charges(before, datetime.now(UTC) + timedelta(seconds=1))
    receipt = sim.ledger.get(paid).receipt
    assert charges == [Charge(str(receipt), "order-12345", 1500)]
    assert await client.charges(before - timedelta(hours=1), before) == []


async def test_a_query_the_provider_keeps_pending_stays_pending(
    sim: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    sim.faults.set(Faults(stk_query=StkQueryFault.PENDING))
    client = daraja(session, sim.base_url)
    checkout = await client.stk_push(push())
    await sim.notifier.join()  # settled in the ledger
    assert sim.ledger.get(checkout).result is not None
    assert await client.stk_query(checkout) is None


async def test_a_push_the_client_gave_up_on_is_still_taken_charged_and_answered(
    sim: RunningSimulator, session: aiohttp.ClientSession
) -> None:
    """The payment service's timeout is not the provider's: what it sent may still succeed."""
    impatient = DarajaClient(
        session,
        sim.base_url,
        SIM.consumer_key,
        SIM.consumer_secret.value,
        SIM.shortcode,
        SIM.passkey.value,
        timeout=0.5,
    )
    await impatient.stk_push(push())  # healthy: the access token is fetched and cached
    sim.faults.set(Faults(latency_seconds=1.5))
    with pytest.raises(ProviderTimeout):
        await impatient.stk_push(push("254712000111"))

    async def charged() -> bool | None:
        entries = [t for t in sim.ledger.transactions() if t.push.phone == "254712000111"]
        return True if entries and entries[0].charged else None

    assert await eventually(charged, timeout=5, what="the timed-out push to be charged")


async def test_an_outage_opens_the_breaker_and_later_pushes_never_reach_the_provider(
    sim: RunningSimulator, session: aiohttp.ClientSession, telemetry: Telemetry
) -> None:
    registry = CollectorRegistry()
    provider = ResilientProvider(
        daraja(session, sim.base_url),
        PaymentMetrics(registry),
        ResiliencePolicy(breaker_threshold=3, breaker_reset_seconds=60),
    )
    await provider.stk_push(push())  # healthy: the access token is fetched and cached
    sim.faults.set(Faults(outage=Outage.HTTP_503))
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await provider.stk_push(push())
    assert provider.circuit_state is CircuitState.OPEN
    refused = sim_requests(telemetry, SERVICE_UNAVAILABLE)
    assert refused >= 3
    with pytest.raises(ProviderCircuitOpen):
        await provider.stk_push(push())
    assert sim_requests(telemetry, SERVICE_UNAVAILABLE) == refused  # failed fast, without a request
    assert registry.get_sample_value("payment_provider_circuit_state", {"provider": "mpesa"}) == 2


async def test_a_refused_connection_is_retried_and_reported_as_never_sent(
    session: aiohttp.ClientSession,
) -> None:
    port = free_port()  # nothing listens on it
    registry = CollectorRegistry()
    provider = ResilientProvider(
        daraja(session, f"http://127.0.0.1:{port}"),
        PaymentMetrics(registry),
        ResiliencePolicy(attempts=3, backoff_base_seconds=0.01, backoff_max_seconds=0.02),
    )
    with pytest.raises(ProviderUnreachable):
        await provider.stk_push(push())
    retries = registry.get_sample_value(
        "payment_provider_retries_total", {"provider": "mpesa", "operation": "stk_push"}
    )
    assert retries == 2


GOOD_ROW = {
    "transactionId": "RCPT000001",
    "trxDate": "2026-03-01T10:00:00Z",
    "msisdn": 254712345678,
    "transactiontype": "c2b-pay-bill-debit",
    "billreference": "order-12345",
    "amount": "1500.0",
}


@pytest.fixture
async def standin() -> AsyncIterator[tuple[str, list[Any]]]:
    """A stand-in Daraja on loopback answering Pull Transactions with the rows the test puts in
    the list it is given; yields its base URL and that list."""
    rows: list[Any] = []

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "stand-in", "expires_in": "3599"})

    async def pull(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer stand-in"
        return web.json_response(
            {
                "ResponseRefID": "r",
                "ResponseCode": "1000",
                "ResponseMessage": "Success",
                "Response": [rows],
            }
        )

    app = web.Application()
    app.router.add_get("/oauth/v1/generate", token)
    app.router.add_post("/pulltransactions/v1/query", pull)
    async with serving(app) as base_url:
        yield base_url, rows


@pytest.mark.parametrize(
    "bad_row",
    [
        {k: v for k, v in GOOD_ROW.items() if k != "billreference"},
        {**GOOD_ROW, "amount": "fifteen hundred"},
        {**GOOD_ROW, "amount": None},
        {**GOOD_ROW, "amount": "1e400"},  # a float, but infinite: no whole shillings
        {**GOOD_ROW, "amount": True},
        {**GOOD_ROW, "transactionId": None},
        "RCPT000002",
    ],
    ids=[
        "missing-field",
        "amount-not-a-number",
        "amount-null",
        "amount-infinite",
        "amount-boolean",
        "receipt-null",
        "not-an-object",
    ],
)
async def test_a_malformed_transaction_row_is_skipped_and_the_good_rows_are_kept(
    standin: tuple[str, list[Any]], session: aiohttp.ClientSession, bad_row: object
) -> None:
    """A bad row is not an outage: raising would be retried, count against the breaker every
    operation shares and hide the good rows for as long as the bad one stays in the window."""
    base_url, rows = standin
    client = daraja(session, base_url)
    window = (datetime.now(UTC) - timedelta(minutes=5), datetime.now(UTC))
    later = {**GOOD_ROW, "transactionId": "RCPT000003", "billreference": "order-3", "amount": 700}
    rows.extend([GOOD_ROW, bad_row, later])
    warnings: list[dict[str, Any]] = []
    sink = logger.add(
        lambda m: warnings.append({**m.record["extra"], "msg": m.record["message"]}),
        level="WARNING",
    )
    try:
        charges = await client.charges(*window)
    finally:
        logger.remove(sink)
    assert charges == [
        Charge("RCPT000001", "order-12345", 1500),
        Charge("RCPT000003", "order-3", 700),
    ]
    # Reported once, with the row (cut short) to find it by at the provider.
    assert warnings == [
        {"row": repr(bad_row)[:300], "msg": "pull transactions: malformed row skipped"}
    ]


def sim_requests(telemetry: Telemetry, result_code: str) -> float:
    value = telemetry.registry.get_sample_value(
        "mpesa_sim_stk_requests_total", {"result_code": result_code}
    )
    return value or 0.0


async def test_a_charge_outlives_a_simulator_restart_when_the_ledger_has_a_journal(
    session: aiohttp.ClientSession, telemetry: Telemetry, tmp_path: Path
) -> None:
    """The invariant checker reads the ledger as ground truth: after a restart it must still
    hold every charge, or say from when it knows (``since``) so the check is scoped."""
    from dataclasses import replace

    from safiri_chaos.invariants.ledger import read_ledger

    settings = replace(SIM, ledger_path=tmp_path / "ledger.jsonl")
    async with run_in_process(settings, telemetry) as first:
        client = daraja(session, first.base_url)
        checkout = await client.stk_push(push())
        await eventually(
            lambda: client.stk_query(checkout), timeout=5, what="the STK query's final answer"
        )
        before = await read_ledger(f"{first.base_url}/simulator/ledger", SIM.admin_key.value)
    async with run_in_process(settings, telemetry) as again:
        after = await read_ledger(f"{again.base_url}/simulator/ledger", SIM.admin_key.value)
    async with run_in_process(SIM, telemetry) as forgetful:
        memory = await read_ledger(f"{forgetful.base_url}/simulator/ledger", SIM.admin_key.value)
    assert before is not None and after is not None and memory is not None
    [charge] = [e for e in after.entries if e.checkout_request_id == checkout]
    assert charge.charged and charge.account_reference == "order-12345"
    assert after.entries == before.entries
    assert after.durable and after.since == before.since
    assert not memory.durable and memory.entries == []
    assert memory.since is not None and before.since is not None and memory.since > before.since

"""Faults switched at run time through ``/simulator/faults``, over real loopback HTTP.

Every test leaves the simulator healthy (the ``heal_afterwards`` fixture DELETEs the faults),
and each fault's test also shows that DELETE heals it.
"""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_mpesa_sim import Faults, FaultState, RunningSimulator, run_in_process
from safiri_telemetry import Telemetry
from tests.conftest import eventually, serving
from tests.integration.test_mpesa_sim_daraja import (
    ADMIN,
    CONSUMER,
    SETTINGS,
    CallbackReceiver,
    bearer,
    get_token,
    push_body,
    query_body,
)

pytestmark = pytest.mark.integration

HEALTHY = {
    "outage": "off",
    "latency_seconds": 0.0,
    "failure_ratio": 0.0,
    "seed": None,
    "flap_period_seconds": None,
    "callbacks": "normal",
    "stk_query": "normal",
}
UNAVAILABLE = "503.001.01"
FAULT_NAMES = [name for name in HEALTHY if name != "seed"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def logs() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(scope="module")
def telemetry(logs: io.StringIO) -> Telemetry:
    return Telemetry.setup(
        "mpesa-simulator",
        install_global=False,
        env={"OTEL_SDK_DISABLED": "false"},
        log_stream=logs,
    )


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    app = web.Application()
    app.router.add_post("/callbacks/{name}", receiver.handle)
    async with serving(app) as base_url:
        receiver.base_url = base_url
        yield receiver


@pytest.fixture(scope="module")
async def sim(telemetry: Telemetry) -> AsyncIterator[RunningSimulator]:
    async with run_in_process(SETTINGS, telemetry) as running:
        yield running


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="module")
async def token(sim: RunningSimulator, http: aiohttp.ClientSession) -> str:
    return await get_token(sim, http)


@pytest.fixture(autouse=True)
async def heal_afterwards(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> AsyncIterator[None]:
    yield
    async with http.delete(f"{sim.base_url}/simulator/faults", headers=ADMIN) as response:
        assert response.status == 200
    await sim.notifier.join()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def flapping_sim(telemetry: Telemetry, clock: FakeClock) -> AsyncIterator[RunningSimulator]:
    async with run_in_process(SETTINGS, telemetry, faults=FaultState(clock)) as running:
        yield running


# --- Helpers -----------------------------------------------------------------------------


async def set_faults(
    sim: RunningSimulator, http: aiohttp.ClientSession, faults: dict[str, Any]
) -> dict[str, Any]:
    url = f"{sim.base_url}/simulator/faults"
    async with http.put(url, json=faults, headers=ADMIN) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def heal(sim: RunningSimulator, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.delete(f"{sim.base_url}/simulator/faults", headers=ADMIN) as response:
        assert response.status == 200
        return dict(await response.json())


async def current_faults(sim: RunningSimulator, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{sim.base_url}/simulator/faults", headers=ADMIN) as response:
        assert response.status == 200
        return dict(await response.json())


async def oauth(sim: RunningSimulator, http: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    url = f"{sim.base_url}/oauth/v1/generate?grant_type=client_credentials"
    async with http.get(url, headers=CONSUMER) as response:
        return response.status, dict(await response.json())


async def stk_push(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    url = f"{sim.base_url}/mpesa/stkpush/v1/processrequest"
    async with http.post(url, json=body, headers=bearer(token)) as response:
        return response.status, dict(await response.json())


async def accepted_push(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, body: dict[str, Any]
) -> str:
    status, answer = await stk_push(sim, http, token, body)
    assert status == 200, answer
    return str(answer["CheckoutRequestID"])


async def stk_query(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, checkout_request_id: str
) -> tuple[int, dict[str, Any]]:
    url = f"{sim.base_url}/mpesa/stkpushquery/v1/query"
    body = query_body(checkout_request_id)
    async with http.post(url, json=body, headers=bearer(token)) as response:
        return response.status, dict(await response.json())


async def ledger_row(
    sim: RunningSimulator, http: aiohttp.ClientSession, checkout_request_id: str
) -> dict[str, Any]:
    async with http.get(f"{sim.base_url}/simulator/ledger", headers=ADMIN) as response:
        rows = (await response.json())["transactions"]
    [row] = [r for r in rows if r["checkout_request_id"] == checkout_request_id]
    return dict(row)


def assert_unavailable(status: int, body: dict[str, Any]) -> None:
    assert status == 503
    assert body["errorCode"] == UNAVAILABLE
    assert body["errorMessage"] == "Service Unavailable"
    assert body["requestId"]


def gauge(telemetry: Telemetry, fault: str) -> float | None:
    return telemetry.registry.get_sample_value("mpesa_sim_faults_active", {"fault": fault})


# --- The admin endpoint ------------------------------------------------------------------


async def test_faults_start_healthy(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    assert await current_faults(sim, http) == HEALTHY


async def test_put_replaces_the_faults_and_get_reads_them_back(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    first = {"latency_seconds": 0.01, "failure_ratio": 0.2, "seed": 9, "stk_query": "pending"}
    assert await set_faults(sim, http, first) == {**HEALTHY, **first}
    assert await current_faults(sim, http) == {**HEALTHY, **first}
    # A PUT replaces the whole set: what it leaves out is healthy again.
    assert await set_faults(sim, http, {"callbacks": "never"}) == {**HEALTHY, "callbacks": "never"}
    assert await heal(sim, http) == HEALTHY
    assert await current_faults(sim, http) == HEALTHY


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("headers", [{}, {"X-Simulator-Admin-Key": "guess"}], ids=["none", "bad"])
async def test_faults_need_the_admin_key(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    method: str,
    headers: dict[str, str],
) -> None:
    await set_faults(sim, http, {"stk_query": "pending"})
    url = f"{sim.base_url}/simulator/faults"
    # A Daraja token is not an admin key either.
    sent = {**headers, **bearer(token)}
    async with http.request(method, url, json={}, headers=sent) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"
    assert await current_faults(sim, http) == {**HEALTHY, "stk_query": "pending"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"outage": "down"}, "outage"),
        ({"latency_seconds": -1}, "latency_seconds"),
        ({"failure_ratio": 1.5}, "failure_ratio"),
        ({"seed": "abc"}, "seed"),
        ({"flap_period_seconds": 0}, "flap_period_seconds"),
        ({"callbacks": "misplaced"}, "callbacks"),
        ({"stk_query": "failed"}, "stk_query"),
        ({"outage": "off", "chaos": True}, "chaos"),
        ({"outage": "http_503", "flap_period_seconds": 2}, "flap_period_seconds"),
        (["outage"], "body"),
    ],
)
async def test_invalid_faults_are_refused_naming_the_field(
    sim: RunningSimulator, http: aiohttp.ClientSession, body: Any, field: str
) -> None:
    url = f"{sim.base_url}/simulator/faults"
    async with http.put(url, json=body, headers=ADMIN) as response:
        assert response.status == 422
        assert response.content_type == "application/problem+json"
        problem = await response.json()
    assert [error["field"] for error in problem["errors"]] == [field]
    assert field in problem["detail"]
    assert await current_faults(sim, http) == HEALTHY


async def test_a_body_that_is_not_json_is_refused(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/simulator/faults"
    async with http.put(url, data=b"{outage", headers=ADMIN) as response:
        assert response.status == 422
        assert (await response.json())["errors"][0]["field"] == "body"


async def test_each_change_is_logged_and_recorded_on_the_admin_span(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    logs: io.StringIO,
    spans: InMemorySpanExporter,
) -> None:
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
    headers = {**ADMIN, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    url = f"{sim.base_url}/simulator/faults"
    async with http.put(url, json={"outage": "http_503", "seed": 4}, headers=headers) as response:
        assert response.status == 200
    [line] = [
        ln
        for ln in logs.getvalue().splitlines()
        if "mpesa simulator faults changed" in ln and trace_id in ln
    ]
    assert '"fault_outage": "http_503"' in line
    assert '"faults_changed": ["outage", "seed"]' in line
    assert '"faults_active": ["outage"]' in line
    [span] = [
        s
        for s in spans.get_finished_spans()
        if s.context.trace_id == int(trace_id, 16) and s.name == "PUT /simulator/faults"
    ]
    attributes = dict(span.attributes or {})
    assert attributes["safiri.mpesa_sim.faults.outage"] == "http_503"
    assert attributes["safiri.mpesa_sim.faults.seed"] == 4
    assert attributes["safiri.mpesa_sim.faults.callbacks"] == "normal"
    assert attributes["safiri.mpesa_sim.faults.changed"] == ("outage", "seed")


async def test_active_faults_gauge_follows_each_change(
    sim: RunningSimulator, http: aiohttp.ClientSession, telemetry: Telemetry
) -> None:
    assert {name: gauge(telemetry, name) for name in FAULT_NAMES} == dict.fromkeys(FAULT_NAMES, 0)
    await set_faults(sim, http, {"latency_seconds": 0.01, "callbacks": "duplicate"})
    on = {name: gauge(telemetry, name) for name in FAULT_NAMES}
    assert on == {**dict.fromkeys(FAULT_NAMES, 0), "latency_seconds": 1, "callbacks": 1}
    async with http.get(f"{sim.base_url}/metrics") as response:
        text = await response.text()
    assert 'mpesa_sim_faults_active{fault="callbacks"} 1.0' in text
    assert 'mpesa_sim_faults_active{fault="outage"} 0.0' in text
    await heal(sim, http)
    assert {name: gauge(telemetry, name) for name in FAULT_NAMES} == dict.fromkeys(FAULT_NAMES, 0)


# --- Outages -----------------------------------------------------------------------------


async def test_http_503_outage_answers_every_daraja_endpoint_until_healed(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    telemetry: Telemetry,
    spans: InMemorySpanExporter,
) -> None:
    refused = {"result_code": UNAVAILABLE}
    before = telemetry.registry.get_sample_value("mpesa_sim_stk_requests_total", refused) or 0
    pushes_before = len(sim.ledger.transactions())
    await set_faults(sim, http, {"outage": "http_503"})
    assert_unavailable(*await oauth(sim, http))
    [span] = [s for s in spans.get_finished_spans() if s.name == "GET /oauth/v1/generate"]
    assert (span.attributes or {})["safiri.mpesa_sim.fault"] == "outage"
    assert_unavailable(*await stk_push(sim, http, token, push_body(receiver.url())))
    assert_unavailable(*await stk_query(sim, http, token, "ws_CO_1"))
    assert len(sim.ledger.transactions()) == pushes_before
    after = telemetry.registry.get_sample_value("mpesa_sim_stk_requests_total", refused)
    assert after == before + 1

    await heal(sim, http)
    assert (await oauth(sim, http))[0] == 200
    await accepted_push(sim, http, token, push_body(receiver.url()))


async def test_refuse_drops_daraja_connections_without_an_answer(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    pushes_before = len(sim.ledger.transactions())
    await set_faults(sim, http, {"outage": "refuse"})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await oauth(sim, http)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await stk_push(sim, http, token, push_body(receiver.url()))
    with pytest.raises(aiohttp.ClientConnectionError):
        await stk_query(sim, http, token, "ws_CO_1")
    assert len(sim.ledger.transactions()) == pushes_before

    await heal(sim, http)
    assert (await oauth(sim, http))[0] == 200
    await accepted_push(sim, http, token, push_body(receiver.url()))


@pytest.mark.parametrize("outage", ["http_503", "refuse"])
@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/simulator/ledger", "/simulator/faults"]
)
async def test_health_metrics_and_admin_keep_answering_during_an_outage(
    sim: RunningSimulator, http: aiohttp.ClientSession, outage: str, path: str
) -> None:
    await set_faults(sim, http, {"outage": outage})
    async with http.get(f"{sim.base_url}{path}", headers=ADMIN) as response:
        assert response.status == 200


async def test_flap_is_down_for_the_first_half_of_each_period_until_healed(
    flapping_sim: RunningSimulator, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    sim = flapping_sim
    await set_faults(sim, http, {"flap_period_seconds": 10})
    assert_unavailable(*await oauth(sim, http))
    clock.now += 5.0
    assert (await oauth(sim, http))[0] == 200
    clock.now += 4.9
    assert (await oauth(sim, http))[0] == 200
    clock.now += 0.1  # the next period begins down again
    assert_unavailable(*await oauth(sim, http))

    await heal(sim, http)
    assert (await oauth(sim, http))[0] == 200
    clock.now += 10.0
    assert (await oauth(sim, http))[0] == 200


# --- Latency and failure ratio -----------------------------------------------------------


async def test_latency_delays_every_daraja_answer(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    await set_faults(sim, http, {"latency_seconds": 0.25})
    started = time.monotonic()
    assert (await oauth(sim, http))[0] == 200
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    await accepted_push(sim, http, token, push_body(receiver.url()))
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    await stk_query(sim, http, token, "ws_CO_1")
    assert time.monotonic() - started >= 0.25

    assert (await heal(sim, http))["latency_seconds"] == 0.0
    assert (await oauth(sim, http))[0] == 200


async def test_failure_ratio_refuses_that_share_of_pushes_with_the_seed_choosing_which(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    faults = Faults(failure_ratio=0.5, seed=2026)
    predicted = FaultState()
    predicted.set(faults)
    expected = [503 if predicted.push_fails() else 200 for _ in range(12)]
    assert 200 in expected
    assert 503 in expected

    await set_faults(sim, http, faults.to_dict())
    # Token and query are not pushes: they neither fail nor use up the dice.
    assert (await oauth(sim, http))[0] == 200
    answers = [await stk_push(sim, http, token, push_body(receiver.url())) for _ in range(12)]
    assert [status for status, _ in answers] == expected
    for status, body in answers:
        if status == 503:
            assert_unavailable(status, body)

    await heal(sim, http)
    await accepted_push(sim, http, token, push_body(receiver.url()))


async def test_failure_ratio_of_one_refuses_every_push(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    await set_faults(sim, http, {"failure_ratio": 1})
    for _ in range(5):
        assert_unavailable(*await stk_push(sim, http, token, push_body(receiver.url())))
    await heal(sim, http)
    await accepted_push(sim, http, token, push_body(receiver.url()))


# --- Callbacks and queries ---------------------------------------------------------------


async def test_callbacks_never_accepts_pushes_but_never_calls_back(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    await set_faults(sim, http, {"callbacks": "never"})
    silent = await accepted_push(sim, http, token, push_body(receiver.url()))
    await heal(sim, http)
    later = await accepted_push(sim, http, token, push_body(receiver.url()))
    # The later push calling back, with nothing left in flight, shows the silent one never will.
    await receiver.wait_for(later)
    await sim.notifier.join()
    assert receiver.for_checkout(silent) == []
    status, body = await stk_query(sim, http, token, silent)
    assert (status, body["errorCode"]) == (500, "500.001.1001")
    row = await ledger_row(sim, http, silent)
    assert (row["state"], row["result_code"], row["callback"]) == ("pending", None, "not_sent")


async def test_callbacks_duplicate_sends_each_callback_twice_until_healed(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    await set_faults(sim, http, {"callbacks": "duplicate"})
    doubled = await accepted_push(sim, http, token, push_body(receiver.url()))
    first, second = await receiver.wait_for(doubled, count=2)
    assert first.body == second.body
    await sim.notifier.join()
    row = await ledger_row(sim, http, doubled)
    assert (row["state"], row["callback"]) == ("completed", "delivered")

    await heal(sim, http)
    single = await accepted_push(sim, http, token, push_body(receiver.url()))
    await receiver.wait_for(single)
    await sim.notifier.join()
    assert len(receiver.for_checkout(single)) == 1
    assert len(receiver.for_checkout(doubled)) == 2


async def test_callbacks_out_of_order_swaps_each_pair_of_pushes(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    await set_faults(sim, http, {"callbacks": "out_of_order"})
    ids = []
    for _ in range(4):
        checkout = await accepted_push(sim, http, token, push_body(receiver.url()))
        # Each push settles before the next is made, so pairs form in push order.
        await eventually(
            lambda c=checkout: _is_completed(sim, http, c), timeout=5, what="settlement"
        )
        ids.append(checkout)
    for checkout in ids:
        await receiver.wait_for(checkout)
    await sim.notifier.join()
    arrived = [c.checkout_request_id for c in receiver.received if c.checkout_request_id in ids]
    assert arrived == [ids[1], ids[0], ids[3], ids[2]]


async def test_callback_held_out_of_order_is_sent_when_healed(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    await set_faults(sim, http, {"callbacks": "out_of_order"})
    held = await accepted_push(sim, http, token, push_body(receiver.url()))
    await eventually(lambda: _is_completed(sim, http, held), timeout=5, what="settlement")
    # Settled (money moved, the query knows) but its callback waits for a partner.
    assert (await ledger_row(sim, http, held))["callback"] == "not_sent"
    assert (await stk_query(sim, http, token, held))[0] == 200
    assert receiver.for_checkout(held) == []

    await heal(sim, http)
    await receiver.wait_for(held)
    await sim.notifier.join()
    assert (await ledger_row(sim, http, held))["callback"] == "delivered"


async def _is_completed(
    sim: RunningSimulator, http: aiohttp.ClientSession, checkout_request_id: str
) -> bool:
    return (await ledger_row(sim, http, checkout_request_id))["state"] == "completed"


async def test_stk_query_pending_hides_the_result_until_healed(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    checkout = await accepted_push(sim, http, token, push_body(receiver.url()))
    await receiver.wait_for(checkout)
    await set_faults(sim, http, {"stk_query": "pending"})
    status, body = await stk_query(sim, http, token, checkout)
    assert status == 500
    assert body["errorCode"] == "500.001.1001"
    assert body["errorMessage"] == "The transaction is being processed"
    # An unknown id is still a bad request: only the answer about real pushes is held back.
    assert (await stk_query(sim, http, token, "ws_CO_1"))[0] == 400

    await heal(sim, http)
    status, body = await stk_query(sim, http, token, checkout)
    assert (status, body["ResultCode"]) == (200, "0")

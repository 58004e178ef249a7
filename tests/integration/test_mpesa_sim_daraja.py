"""The simulator over real loopback HTTP: token, STK push, STK query, callbacks and ledger.

A small aiohttp app on another loopback port plays the merchant receiving callbacks.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_mpesa_sim import RunningSimulator, Settings, run_in_process, stk_password
from safiri_telemetry import Telemetry
from tests.conftest import free_port, serving

pytestmark = pytest.mark.integration

SETTINGS = Settings(callback_delay=0.0)
CONSUMER = {
    "Authorization": aiohttp.encode_basic_auth(
        SETTINGS.consumer_key, SETTINGS.consumer_secret.value
    )
}
ADMIN = {"X-Simulator-Admin-Key": SETTINGS.admin_key.value}
TIMESTAMP = "20260125143000"
SUCCESS_PHONE = "254712345678"
NO_CALLBACK_PHONE = "254700009999"
FAILURES = [
    ("254700000001", 1, "The balance is insufficient for the transaction."),
    ("254700001032", 1032, "Request cancelled by user"),
    ("254700001037", 1037, "DS timeout user cannot be reached"),
    ("254700002001", 2001, "The initiator information is invalid."),
]


@dataclass
class Callback:
    name: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int

    @property
    def checkout_request_id(self) -> str:
        return str(self.body["Body"]["stkCallback"]["CheckoutRequestID"])


@dataclass
class CallbackReceiver:
    """The merchant side: records every callback; ``scripts`` make a path answer 5xx/4xx."""

    base_url: str = ""
    received: list[Callback] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, name: str = "ok") -> str:
        return f"{self.base_url}/callbacks/{name}"

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        script = self.scripts.get(name)
        status = script.pop(0) if script else 200
        callback = Callback(name, dict(request.headers), await request.json(), status)
        async with self.arrived:
            self.received.append(callback)
            self.arrived.notify_all()
        return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"}, status=status)

    def for_checkout(self, checkout_request_id: str) -> list[Callback]:
        return [c for c in self.received if c.checkout_request_id == checkout_request_id]

    async def wait_for(self, checkout_request_id: str, count: int = 1) -> list[Callback]:
        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(
                lambda: len(self.for_checkout(checkout_request_id)) >= count
            )
        return self.for_checkout(checkout_request_id)


@pytest.fixture(scope="module")
def sim_spans() -> Iterator[InMemorySpanExporter]:
    """Spans of the process-wide provider (installed here unless a test already installed one).

    The server middleware, business spans and aiohttp client spans all use the global
    provider, so trace propagation can only be observed through it.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture(scope="module")
def logs() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(scope="module")
def telemetry(sim_spans: InMemorySpanExporter, logs: io.StringIO) -> Telemetry:
    return Telemetry.setup(
        "mpesa-simulator",
        install_global=False,
        env={"OTEL_SDK_DISABLED": "false"},
        span_processor=SimpleSpanProcessor(InMemorySpanExporter()),
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


async def get_token(sim: RunningSimulator, http: aiohttp.ClientSession) -> str:
    url = f"{sim.base_url}/oauth/v1/generate?grant_type=client_credentials"
    async with http.get(url, headers=CONSUMER) as response:
        assert response.status == 200
        return str((await response.json())["access_token"])


def push_body(callback_url: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "BusinessShortCode": SETTINGS.shortcode,
        "Password": stk_password(SETTINGS.shortcode, SETTINGS.passkey.value, TIMESTAMP),
        "Timestamp": TIMESTAMP,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1500,
        "PartyA": SUCCESS_PHONE,
        "PartyB": SETTINGS.shortcode,
        "PhoneNumber": SUCCESS_PHONE,
        "CallBackURL": callback_url,
        "AccountReference": "ORDER-42",
        "TransactionDesc": "Bus ticket",
    }
    body.update(overrides)
    return body


def query_body(checkout_request_id: str) -> dict[str, Any]:
    return {
        "BusinessShortCode": SETTINGS.shortcode,
        "Password": stk_password(SETTINGS.shortcode, SETTINGS.passkey.value, TIMESTAMP),
        "Timestamp": TIMESTAMP,
        "CheckoutRequestID": checkout_request_id,
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str],
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def push(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, body: dict[str, Any]
) -> dict[str, Any]:
    url = f"{sim.base_url}/mpesa/stkpush/v1/processrequest"
    status, answer = await post(http, url, body, bearer(token))
    assert status == 200, answer
    return answer


async def query(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, checkout_request_id: str
) -> tuple[int, dict[str, Any]]:
    url = f"{sim.base_url}/mpesa/stkpushquery/v1/query"
    return await post(http, url, query_body(checkout_request_id), bearer(token))


async def ledger_rows(sim: RunningSimulator, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{sim.base_url}/simulator/ledger", headers=ADMIN) as response:
        assert response.status == 200
        rows = (await response.json())["transactions"]
    return {row["checkout_request_id"]: row for row in rows}


def metric(telemetry: Telemetry, name: str, labels: dict[str, str]) -> float:
    return telemetry.registry.get_sample_value(name, labels) or 0.0


# --- OAuth -------------------------------------------------------------------------------


async def test_consumer_credentials_get_a_token(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/oauth/v1/generate?grant_type=client_credentials"
    async with http.get(url, headers=CONSUMER) as response:
        assert response.status == 200
        first = await response.json()
    assert first["expires_in"] == "3599"
    assert len(first["access_token"]) >= 24
    assert await get_token(sim, http) != first["access_token"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": aiohttp.encode_basic_auth("safiri-sim-consumer-key", "wrong")},
        {"Authorization": aiohttp.encode_basic_auth("wrong", "safiri-sim-consumer-secret")},
        {"Authorization": "Basic not-base64!"},
        {},
    ],
    ids=["wrong-secret", "wrong-key", "garbled", "missing"],
)
async def test_wrong_credentials_get_no_token(
    sim: RunningSimulator, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    url = f"{sim.base_url}/oauth/v1/generate?grant_type=client_credentials"
    async with http.get(url, headers=headers) as response:
        assert response.status == 400
        body = await response.json()
    assert body["errorCode"] == "400.008.01"
    assert body["errorMessage"] == "Invalid Authentication passed"
    assert body["requestId"]


async def test_token_requires_client_credentials_grant(
    sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sim.base_url}/oauth/v1/generate", headers=CONSUMER) as response:
        assert response.status == 400
        assert (await response.json())["errorCode"] == "400.008.02"


# --- STK push ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer made-up-token"}, {"Authorization": "Basic abc"}],
    ids=["missing", "unknown", "wrong-scheme"],
)
async def test_push_without_a_valid_token_is_refused(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    receiver: CallbackReceiver,
    headers: dict[str, str],
) -> None:
    url = f"{sim.base_url}/mpesa/stkpush/v1/processrequest"
    status, body = await post(http, url, push_body(receiver.url()), headers)
    assert status == 401
    assert body["errorCode"] == "404.001.03"
    assert body["errorMessage"] == "Invalid Access Token"
    assert body["requestId"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"Password": "d3JvbmcgcGFzc3dvcmQ="}, "Password"),
        ({"Timestamp": "25-01-2026"}, "Timestamp"),
        ({"BusinessShortCode": "600000"}, "BusinessShortCode"),
        ({"Amount": 0}, "Amount"),
        ({"Amount": 99.5}, "Amount"),
        ({"Amount": "many"}, "Amount"),
        ({"PhoneNumber": "0712345678"}, "PhoneNumber"),
        ({"PhoneNumber": "254812345678"}, "PhoneNumber"),
        ({"CallBackURL": "ftp://merchant.example/cb"}, "CallBackURL"),
        ({"CallBackURL": "callback"}, "CallBackURL"),
        ({"TransactionType": "Refund"}, "TransactionType"),
    ],
)
async def test_invalid_push_names_the_field(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    overrides: dict[str, Any],
    field: str,
) -> None:
    url = f"{sim.base_url}/mpesa/stkpush/v1/processrequest"
    status, body = await post(http, url, push_body(receiver.url(), **overrides), bearer(token))
    assert status == 400
    assert body["errorCode"] == "400.002.02"
    assert body["errorMessage"] == f"Bad Request - Invalid {field}"
    assert body["requestId"]


async def test_push_body_that_is_not_a_json_object_is_refused(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str
) -> None:
    url = f"{sim.base_url}/mpesa/stkpush/v1/processrequest"
    async with http.post(url, data=b"{not json", headers=bearer(token)) as response:
        assert response.status == 400
        assert (await response.json())["errorCode"] == "400.002.02"


async def test_accepted_push_answers_like_daraja(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    first = await push(sim, http, token, push_body(receiver.url()))
    second = await push(sim, http, token, push_body(receiver.url()))
    assert first["ResponseCode"] == "0"
    assert first["ResponseDescription"] == "Success. Request accepted for processing"
    assert first["CustomerMessage"] == "Success. Request accepted for processing"
    assert re.fullmatch(r"ws_CO_\d+", first["CheckoutRequestID"])
    assert first["MerchantRequestID"]
    assert first["CheckoutRequestID"] != second["CheckoutRequestID"]
    await receiver.wait_for(second["CheckoutRequestID"])


# --- Callbacks ---------------------------------------------------------------------------


async def test_successful_payment_calls_back_with_metadata(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    accepted = await push(sim, http, token, push_body(receiver.url(), Amount=2300))
    [callback] = await receiver.wait_for(accepted["CheckoutRequestID"])
    result = callback.body["Body"]["stkCallback"]
    assert result["MerchantRequestID"] == accepted["MerchantRequestID"]
    assert result["ResultCode"] == 0
    assert result["ResultDesc"] == "The service request is processed successfully."
    items = {item["Name"]: item["Value"] for item in result["CallbackMetadata"]["Item"]}
    assert items["Amount"] == 2300
    assert re.fullmatch(r"[A-Z0-9]{10}", items["MpesaReceiptNumber"])
    assert isinstance(items["TransactionDate"], int)
    assert len(str(items["TransactionDate"])) == 14
    assert items["PhoneNumber"] == int(SUCCESS_PHONE)


@pytest.mark.parametrize(("phone", "code", "desc"), FAILURES)
async def test_test_phone_result_code_reaches_the_callback(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    phone: str,
    code: int,
    desc: str,
) -> None:
    body = push_body(receiver.url(), PhoneNumber=phone, PartyA=phone)
    accepted = await push(sim, http, token, body)
    [callback] = await receiver.wait_for(accepted["CheckoutRequestID"])
    assert callback.body == {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": accepted["MerchantRequestID"],
                "CheckoutRequestID": accepted["CheckoutRequestID"],
                "ResultCode": code,
                "ResultDesc": desc,
            }
        }
    }


async def test_no_callback_phone_is_accepted_but_never_answered(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    silent = await push(sim, http, token, push_body(receiver.url(), PhoneNumber=NO_CALLBACK_PHONE))
    later = await push(sim, http, token, push_body(receiver.url()))
    # The later push's callback arriving (and nothing left in flight) shows the simulator
    # has moved past the silent one without ever calling back.
    await receiver.wait_for(later["CheckoutRequestID"])
    await sim.notifier.join()
    assert receiver.for_checkout(silent["CheckoutRequestID"]) == []
    status, body = await query(sim, http, token, silent["CheckoutRequestID"])
    assert status == 500
    assert body["errorCode"] == "500.001.1001"
    assert body["errorMessage"] == "The transaction is being processed"
    row = (await ledger_rows(sim, http))[silent["CheckoutRequestID"]]
    assert row["state"] == "pending"
    assert row["result_code"] is None


async def test_callback_is_retried_after_5xx_until_delivered(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    telemetry: Telemetry,
) -> None:
    delivered_before = metric(telemetry, "mpesa_sim_callbacks_total", {"outcome": "delivered"})
    receiver.scripts["flaky"] = [503, 500]
    accepted = await push(sim, http, token, push_body(receiver.url("flaky")))
    attempts = await receiver.wait_for(accepted["CheckoutRequestID"], count=3)
    await sim.notifier.join()
    assert [a.status for a in attempts] == [503, 500, 200]
    assert all(a.body == attempts[0].body for a in attempts)
    row = (await ledger_rows(sim, http))[accepted["CheckoutRequestID"]]
    assert row["callback"] == "delivered"
    delivered = metric(telemetry, "mpesa_sim_callbacks_total", {"outcome": "delivered"})
    assert delivered == delivered_before + 1


async def test_callback_refused_with_4xx_is_not_retried_but_money_moved(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    telemetry: Telemetry,
) -> None:
    failed_before = metric(telemetry, "mpesa_sim_callbacks_total", {"outcome": "failed"})
    receiver.scripts["refuses"] = [400]
    accepted = await push(sim, http, token, push_body(receiver.url("refuses")))
    await receiver.wait_for(accepted["CheckoutRequestID"])
    await sim.notifier.join()
    assert len(receiver.for_checkout(accepted["CheckoutRequestID"])) == 1
    row = (await ledger_rows(sim, http))[accepted["CheckoutRequestID"]]
    assert (row["state"], row["result_code"], row["callback"]) == ("completed", 0, "failed")
    assert row["receipt"] is not None
    failed = metric(telemetry, "mpesa_sim_callbacks_total", {"outcome": "failed"})
    assert failed == failed_before + 1


async def test_callback_gives_up_after_three_5xx(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    receiver.scripts["down"] = [503, 503, 503, 503]
    accepted = await push(sim, http, token, push_body(receiver.url("down")))
    await receiver.wait_for(accepted["CheckoutRequestID"], count=3)
    await sim.notifier.join()
    assert len(receiver.for_checkout(accepted["CheckoutRequestID"])) == 3
    row = (await ledger_rows(sim, http))[accepted["CheckoutRequestID"]]
    assert row["callback"] == "failed"


async def test_unreachable_merchant_is_retried_then_given_up(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}/callback"
    accepted = await push(sim, http, token, push_body(url))
    started = time.monotonic()
    await sim.notifier.join()
    # Both backoff pauses (0.2 s + 0.5 s) were taken: three attempts, not one.
    assert time.monotonic() - started >= 0.6
    row = (await ledger_rows(sim, http))[accepted["CheckoutRequestID"]]
    assert (row["state"], row["callback"]) == ("completed", "failed")


async def test_callback_continues_the_trace_of_the_push(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    sim_spans: InMemorySpanExporter,
) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {**bearer(token), "traceparent": f"00-{trace_id}-{parent_id}-01"}
    url = f"{sim.base_url}/mpesa/stkpush/v1/processrequest"
    async with http.post(url, json=push_body(receiver.url()), headers=headers) as response:
        assert response.status == 200
        assert response.headers["X-Trace-Id"] == trace_id
        accepted = await response.json()
    [callback] = await receiver.wait_for(accepted["CheckoutRequestID"])
    _version, callback_trace, callback_parent, _flags = callback.headers["traceparent"].split("-")
    assert callback_trace == trace_id
    assert callback_parent != parent_id  # a client span of the simulator's, not the caller's
    await sim.notifier.join()
    names = {
        s.name for s in sim_spans.get_finished_spans() if s.context.trace_id == int(trace_id, 16)
    }
    assert {"mpesa.accept_stk_push", "mpesa.deliver_callback"} <= names


async def test_delivery_is_logged_with_the_phone_masked(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    logs: io.StringIO,
) -> None:
    accepted = await push(sim, http, token, push_body(receiver.url()))
    await receiver.wait_for(accepted["CheckoutRequestID"])
    await sim.notifier.join()
    lines = [line for line in logs.getvalue().splitlines() if accepted["CheckoutRequestID"] in line]
    assert any('"mpesa callback delivered"' in line and "2547*****678" in line for line in lines)
    assert SUCCESS_PHONE not in logs.getvalue()


# --- STK query ---------------------------------------------------------------------------


async def test_query_after_completion_reports_the_result(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    body = push_body(receiver.url(), PhoneNumber="254700001032")
    accepted = await push(sim, http, token, body)
    await receiver.wait_for(accepted["CheckoutRequestID"])
    status, answer = await query(sim, http, token, accepted["CheckoutRequestID"])
    assert status == 200
    assert answer == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": accepted["MerchantRequestID"],
        "CheckoutRequestID": accepted["CheckoutRequestID"],
        "ResultCode": "1032",
        "ResultDesc": "Request cancelled by user",
    }


async def test_query_for_an_unknown_checkout_is_a_bad_request(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str
) -> None:
    status, body = await query(sim, http, token, "ws_CO_000000")
    assert status == 400
    assert body["errorCode"] == "400.002.02"
    assert body["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"


async def test_query_checks_token_and_password(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str
) -> None:
    url = f"{sim.base_url}/mpesa/stkpushquery/v1/query"
    status, body = await post(http, url, query_body("ws_CO_1"), bearer("nope"))
    assert (status, body["errorCode"]) == (401, "404.001.03")
    wrong = {**query_body("ws_CO_1"), "Password": "eA=="}
    status, body = await post(http, url, wrong, bearer(token))
    assert (status, body["errorMessage"]) == (400, "Bad Request - Invalid Password")


async def test_query_while_the_customer_has_not_answered_is_pending(
    telemetry: Telemetry,
    http: aiohttp.ClientSession,
    receiver: CallbackReceiver,
) -> None:
    patient = Settings(callback_delay=3600.0)
    async with run_in_process(patient, telemetry) as slow:
        token = await get_token(slow, http)
        accepted = await push(slow, http, token, push_body(receiver.url()))
        status, body = await query(slow, http, token, accepted["CheckoutRequestID"])
        assert (status, body["errorCode"]) == (500, "500.001.1001")
        assert slow.notifier.in_flight == 1
    # Leaving the block ran the app's cleanup: the waiting task was cancelled and awaited.
    assert slow.notifier.in_flight == 0
    assert receiver.for_checkout(accepted["CheckoutRequestID"]) == []


# --- Ledger, metrics, health -------------------------------------------------------------


async def test_ledger_shows_charges_and_failures(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, receiver: CallbackReceiver
) -> None:
    paid = await push(sim, http, token, push_body(receiver.url(), Amount=700))
    body = push_body(receiver.url(), PhoneNumber="254700000001")
    broke = await push(sim, http, token, body)
    await receiver.wait_for(paid["CheckoutRequestID"])
    await receiver.wait_for(broke["CheckoutRequestID"])
    await sim.notifier.join()
    rows = await ledger_rows(sim, http)
    charge = rows[paid["CheckoutRequestID"]]
    assert charge["merchant_request_id"] == paid["MerchantRequestID"]
    assert charge["phone"] == "2547*****678"
    assert (charge["amount"], charge["account_reference"]) == (700, "ORDER-42")
    assert (charge["state"], charge["result_code"], charge["callback"]) == (
        "completed",
        0,
        "delivered",
    )
    assert charge["result_desc"] == "The service request is processed successfully."
    assert re.fullmatch(r"[A-Z0-9]{10}", charge["receipt"])
    assert charge["created_at"] <= charge["completed_at"]
    failure = rows[broke["CheckoutRequestID"]]
    assert (failure["result_code"], failure["receipt"]) == (1, None)
    assert failure["phone"] == "2547*****001"


@pytest.mark.parametrize("headers", [{}, {"X-Simulator-Admin-Key": "guess"}])
async def test_ledger_needs_the_admin_key(
    sim: RunningSimulator, http: aiohttp.ClientSession, token: str, headers: dict[str, str]
) -> None:
    # A Daraja token is not an admin key.
    async with http.get(
        f"{sim.base_url}/simulator/ledger", headers={**headers, **bearer(token)}
    ) as response:
        assert response.status == 401
        assert response.content_type == "application/problem+json"


async def test_metrics_count_pushes_by_result_code(
    sim: RunningSimulator,
    http: aiohttp.ClientSession,
    token: str,
    receiver: CallbackReceiver,
    telemetry: Telemetry,
) -> None:
    def count(code: str) -> float:
        return metric(telemetry, "mpesa_sim_stk_requests_total", {"result_code": code})

    before = {code: count(code) for code in ("0", "1037", "none", "400.002.02", "404.001.03")}
    await push(sim, http, token, push_body(receiver.url()))
    await push(sim, http, token, push_body(receiver.url(), PhoneNumber="254700001037"))
    await push(sim, http, token, push_body(receiver.url(), PhoneNumber=NO_CALLBACK_PHONE))
    url = f"{sim.base_url}/mpesa/stkpush/v1/processrequest"
    await post(http, url, push_body(receiver.url(), Amount=-1), bearer(token))
    await post(http, url, push_body(receiver.url()), {})
    await sim.notifier.join()
    assert {code: count(code) - value for code, value in before.items()} == dict.fromkeys(
        before, 1.0
    )
    async with http.get(f"{sim.base_url}/metrics") as response:
        text = await response.text()
    assert 'mpesa_sim_stk_requests_total{result_code="0"}' in text
    assert 'mpesa_sim_callbacks_total{outcome="delivered"}' in text


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_simulator_is_always_healthy_and_ready(
    sim: RunningSimulator, http: aiohttp.ClientSession, path: str
) -> None:
    async with http.get(f"{sim.base_url}{path}") as response:
        assert response.status == 200

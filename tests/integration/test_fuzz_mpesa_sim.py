"""The simulator's Daraja endpoints and admin API fuzzed from their own request models, the real
app on loopback: malformed input gets Daraja's 400 (or a 4xx problem+json on the admin API),
never a 5xx, and the simulator's 5xx series moves only for Daraja's documented "still being
processed" answer to an STK query."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import strategies as st
from prometheus_client import generate_latest
from schemathesis import Case, Response

from safiri_mpesa_sim import RunningSimulator, Settings, run_in_process, stk_password
from safiri_mpesa_sim.entrypoints.pull import PULL_TRANSACTIONS_PATH
from safiri_mpesa_sim.entrypoints.requests import (
    FaultSettings,
    PullTransactionsRequest,
    StkPushRequest,
    StkQueryRequest,
    TokenQuery,
)
from safiri_mpesa_sim.entrypoints.stk import STK_PUSH_PATH, STK_QUERY_PATH
from safiri_telemetry import Telemetry
from tests.integration.http_fuzz import (
    Operation,
    fuzz,
    openapi_document,
    problem_json_fault,
    send_raw,
    server_errors,
)
from tests.integration.test_payment_provider_simulator import simulator_telemetry

pytestmark = pytest.mark.integration

# No result is settled while fuzzing (a callback to a generated URL would go anywhere), so a
# query about a real push is always Daraja's "still being processed".
SETTINGS = Settings(callback_delay=3600.0)
TIMESTAMP = "20260125143000"
CREDENTIALS = {
    "BusinessShortCode": SETTINGS.shortcode,
    "Timestamp": TIMESTAMP,
    "Password": stk_password(SETTINGS.shortcode, SETTINGS.passkey.value, TIMESTAMP),
}
BASIC = aiohttp.encode_basic_auth(SETTINGS.consumer_key, SETTINGS.consumer_secret.value)
ADMIN_KEY = "X-Simulator-Admin-Key"
PENDING = "500.001.1001"

DARAJA_API = openapi_document(
    "M-Pesa simulator (Daraja)",
    [
        Operation("GET", "/oauth/v1/generate", query=TokenQuery),
        Operation("POST", STK_PUSH_PATH, body=StkPushRequest),
        Operation("POST", STK_QUERY_PATH, body=StkQueryRequest),
        Operation("POST", PULL_TRANSACTIONS_PATH, body=PullTransactionsRequest),
    ],
)
ADMIN_API = openapi_document(
    "M-Pesa simulator (admin)",
    [
        Operation("PUT", "/simulator/faults", body=FaultSettings),
        Operation("GET", "/simulator/faults"),
        Operation("DELETE", "/simulator/faults"),
        Operation("GET", "/simulator/ledger"),
    ],
)


@pytest.fixture(scope="module")
def telemetry() -> Telemetry:
    return simulator_telemetry()


@dataclass
class Sim:
    running: RunningSimulator
    telemetry: Telemetry
    token: str
    checkout_request_id: str
    pending_answers: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.running.base_url

    def server_errors(self) -> float:
        return server_errors(generate_latest(self.telemetry.registry).decode())


@pytest_asyncio.fixture(scope="module")
async def sim(telemetry: Telemetry) -> AsyncIterator[Sim]:
    async with run_in_process(SETTINGS, telemetry) as running, aiohttp.ClientSession() as http:
        url = f"{running.base_url}/oauth/v1/generate?grant_type=client_credentials"
        async with http.get(url, headers={"Authorization": BASIC}) as response:
            token = (await response.json())["access_token"]
        push = CREDENTIALS | {
            "TransactionType": "CustomerPayBillOnline",
            "Amount": 1500,
            "PhoneNumber": "254712345678",
            "CallBackURL": "http://127.0.0.1:9/callback",
            "AccountReference": "order-1",
        }
        async with http.post(
            running.base_url + STK_PUSH_PATH,
            json=push,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            checkout = (await response.json())["CheckoutRequestID"]
        yield Sim(running, telemetry, token, checkout)


def daraja_fault(status: int, content_type: str, body: bytes, path: str) -> str | None:
    """What is wrong with a Daraja answer: a 5xx (bar a query's "being processed"), or a 4xx
    in neither Daraja's error shape nor problem+json (aiohttp's own 404/405/413)."""
    if status >= 500:
        try:
            code = json.loads(body).get("errorCode")
        except ValueError:
            code = None
        if status == 500 and path == STK_QUERY_PATH and code == PENDING:
            return None
        return f"server error {status} {body[:200]!r}"
    if status < 400:
        return None
    if content_type.startswith("application/problem+json"):
        return problem_json_fault(status, content_type, body)
    try:
        error = json.loads(body)
    except ValueError:
        return f"{status} that is not JSON: {body[:200]!r}"
    if not isinstance(error, dict) or set(error) != {"requestId", "errorCode", "errorMessage"}:
        return f"{status} not in Daraja's error shape: {error!r}"
    return None


async def test_no_generated_daraja_request_gets_a_server_error(sim: Sim) -> None:
    pending: list[str] = []
    calls = iter(range(10**6))

    def authorized(case: Case[Any], data: st.DataObject) -> None:
        # Most requests carry a valid token (or, for the token endpoint, the consumer's
        # credentials) and half the bodies valid credentials, so the fields behind them are
        # reached; half the queries ask about a push that is really in flight.
        if next(calls) % 5:  # every fifth without: hypothesis would favour one branch
            auth = BASIC if case.path.startswith("/oauth/") else f"Bearer {sim.token}"
            case.headers["Authorization"] = auth
        if isinstance(case.body, dict) and data.draw(st.booleans()):
            if "ShortCode" in case.body:
                case.body["ShortCode"] = SETTINGS.shortcode
            else:
                case.body.update(CREDENTIALS)
            if case.path == STK_QUERY_PATH:
                case.body["CheckoutRequestID"] = sim.checkout_request_id

    def check(case: Case[Any], response: Response) -> str | None:
        content_type = (response.headers.get("content-type") or [""])[0]
        if response.status_code == 500:
            pending.append(case.path)
        return daraja_fault(response.status_code, content_type, response.content, case.path)

    before = sim.server_errors()
    sent, faults = await fuzz(
        DARAJA_API, sim.base_url, examples=300, check=check, prepare=authorized
    )
    assert faults == []
    assert sent >= 300
    assert len(pending) > 0  # the documented 500 was reached, and told apart by its body
    assert sim.server_errors() - before == len(pending)


async def test_no_generated_admin_request_gets_a_server_error(telemetry: Telemetry) -> None:
    # An instance of its own: the faults switched on here must not reach the Daraja fuzzing.
    async with run_in_process(SETTINGS, telemetry) as running:
        calls = iter(range(10**6))

        def with_the_key(case: Case[Any], data: st.DataObject) -> None:
            if next(calls) % 4:  # every fourth without: hypothesis would favour one branch
                case.headers[ADMIN_KEY] = SETTINGS.admin_key.value

        def check(case: Case[Any], response: Response) -> str | None:
            content_type = (response.headers.get("content-type") or [""])[0]
            return problem_json_fault(response.status_code, content_type, response.content)

        metrics = telemetry.registry
        before = server_errors(generate_latest(metrics).decode())
        sent, faults = await fuzz(
            ADMIN_API, running.base_url, examples=150, check=check, prepare=with_the_key
        )
        assert faults == []
        assert sent >= 150
        assert server_errors(generate_latest(metrics).decode()) == before


def _push(**changes: object) -> bytes:
    body = CREDENTIALS | {
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 1500,
        "PhoneNumber": "254712345678",
        "CallBackURL": "http://127.0.0.1:9/callback",
        "AccountReference": "order-1",
    }
    return json.dumps(body | changes).encode()


def _pull(**changes: object) -> bytes:
    body = {
        "ShortCode": SETTINGS.shortcode,
        "StartDate": "2026-01-01 00:00:00",
        "EndDate": "2099-01-01 00:00:00",
        "OffSetValue": "0",
    }
    return json.dumps(body | changes).encode()


PUSH = b"POST " + STK_PUSH_PATH.encode() + b" HTTP/1.1\r\nAuthorization: Bearer TOKEN"
PULL = b"POST " + PULL_TRANSACTIONS_PATH.encode() + b" HTTP/1.1\r\nAuthorization: Bearer TOKEN"
QUERY = b"POST " + STK_QUERY_PATH.encode() + b" HTTP/1.1\r\nAuthorization: Bearer TOKEN"
ADMIN = b"PUT /simulator/faults HTTP/1.1\r\n" + f"{ADMIN_KEY}: {SETTINGS.admin_key.value}".encode()
OAUTH = b"GET /oauth/v1/generate?grant_type=client_credentials HTTP/1.1\r\nAuthorization: "
REFUSED, SERVED = True, False
RAW = [
    pytest.param(PUSH, b"[" * 100_000, REFUSED, id="deep-nesting"),
    pytest.param(PUSH, b"{" + b" " * 3_000_000 + b"}", REFUSED, id="oversize"),
    pytest.param(PUSH, _push(Password="p\u00e4ssword"), REFUSED, id="non-ascii-password"),
    pytest.param(PUSH, _push(CallBackURL="http://[::1/cb"), REFUSED, id="unclosed-ipv6-url"),
    pytest.param(PUSH, _push(Amount="9" * 5000), REFUSED, id="amount-of-5000-digits"),
    pytest.param(PUSH, _push(TransactionType=["CustomerPayBillOnline"]), REFUSED, id="type-a-list"),
    pytest.param(PUSH, _push(PhoneNumber="2547\u0661\u0662345678"), REFUSED, id="arabic-digit"),
    pytest.param(PUSH, _push(PhoneNumber="254712345678\n"), REFUSED, id="phone-and-newline"),
    pytest.param(PUSH, _push(Amount="1500"), SERVED, id="amount-as-text"),
    pytest.param(
        QUERY,
        b'{"Password": "\\u00e9", "Timestamp": "'
        + TIMESTAMP.encode()
        + b'", "BusinessShortCode": "'
        + SETTINGS.shortcode.encode()
        + b'", "CheckoutRequestID": "x"}',
        REFUSED,
        id="query-non-ascii-password",
    ),
    pytest.param(PULL, _pull(StartDate="0001-01-01 00:00:00"), REFUSED, id="first-day-of-year-1"),
    pytest.param(ADMIN, b"[" * 100_000, REFUSED, id="admin-deep-nesting"),
    pytest.param(ADMIN, b'{"latency_seconds": 1e999}', REFUSED, id="admin-infinite-latency"),
    pytest.param(OAUTH + b"Basic \xc3\xa9\xc3\xa9", b"", REFUSED, id="non-ascii-basic-auth"),
]


@pytest.mark.parametrize(("head", "body", "refused"), RAW)
async def test_a_malformed_daraja_request_gets_darajas_400_never_a_5xx(
    sim: Sim, head: bytes, body: bytes, refused: bool
) -> None:
    before = sim.server_errors()
    answer = await send_raw(sim.base_url, head.replace(b"TOKEN", sim.token.encode()), body)
    path = head.split(b" ")[1].decode()
    assert daraja_fault(answer.status, answer.content_type, answer.body, path) is None
    assert (400 <= answer.status < 500) is refused, answer
    assert sim.server_errors() == before


async def test_an_amount_too_large_for_a_float_is_refused_so_the_transaction_list_still_answers(
    sim: Sim,
) -> None:
    before = sim.server_errors()
    pushed = await send_raw(
        sim.base_url, PUSH.replace(b"TOKEN", sim.token.encode()), _push(Amount=10**400)
    )
    assert pushed.status == 400
    listed = await send_raw(sim.base_url, PULL.replace(b"TOKEN", sim.token.encode()), _pull())
    assert listed.status == 200
    assert sim.server_errors() == before

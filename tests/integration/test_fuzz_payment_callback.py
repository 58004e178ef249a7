"""Payment's provider-callback endpoint fuzzed from its own request models, the real app on a
real PostgreSQL and RabbitMQ: every malformed callback is a 4xx problem+json, none a 5xx, and
neither the 5xx series nor the provider's circuit breaker moves."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from schemathesis import Case, Response

from safiri_payment.bootstrap import create_app
from safiri_payment.entrypoints.http import CALLBACK_PATH
from safiri_payment.entrypoints.requests import CallbackQuery, StkCallbackBody
from safiri_payment.service_layer.handlers import token_hash
from safiri_payment.settings import Settings
from safiri_telemetry import Telemetry, TelemetryConfig
from tests.conftest import own_vhost
from tests.integration.http_fuzz import (
    Operation,
    fuzz,
    metric_samples,
    openapi_document,
    problem_json_fault,
    send_raw,
    server_errors,
)

pytestmark = pytest.mark.integration

CALLBACK_API = openapi_document(
    "Safiri payment (provider callbacks)",
    [
        Operation(
            "POST",
            CALLBACK_PATH,
            body=StkCallbackBody,
            query=CallbackQuery,
            path_params={"payment_id": {"type": "string", "format": "uuid"}},
        )
    ],
)


@dataclass(frozen=True)
class Awaiting:
    """A payment waiting for its callback, with the token and checkout id that match it."""

    payment_id: str
    token: str
    checkout_request_id: str


@dataclass
class Payment:
    client: TestClient[web.Request, web.Application]
    base_url: str
    database_url: str
    awaiting: list[Awaiting] = field(default_factory=list)

    async def metrics(self) -> str:
        async with self.client.get("/metrics") as response:
            return await response.text()

    async def new_payments(self, count: int) -> list[Awaiting]:
        made = [
            Awaiting(str(uuid.uuid4()), uuid.uuid4().hex, f"ws_CO_{uuid.uuid4().hex}")
            for _ in range(count)
        ]
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.executemany(
                "INSERT INTO payments (payment_id, order_id, amount, currency, phone, status,"
                " checkout_request_id, callback_token_hash)"
                " VALUES ($1::uuid, $2::uuid, 600, 'KES', '254712345678', 'AWAITING_CALLBACK',"
                " $3, $4)",
                [
                    (a.payment_id, str(uuid.uuid4()), a.checkout_request_id, token_hash(a.token))
                    for a in made
                ],
            )
        finally:
            await conn.close()
        return made


def breaker(metrics_text: str) -> dict[str, Any]:
    """The circuit breaker's state gauge and transition counts, as the service exports them."""
    return {
        name: metric_samples(metrics_text, name)
        for name in (
            "payment_provider_circuit_state",
            "payment_provider_circuit_transitions_total",
        )
    }


@pytest_asyncio.fixture(scope="module")
async def payment(make_database: Callable[[str], Awaitable[str]]) -> AsyncIterator[Payment]:
    database_url = await make_database(f"payment_fuzz_{uuid.uuid4().hex[:6]}")
    with own_vhost(f"safiri-test-pay-fuzz-{uuid.uuid4().hex[:8]}") as amqp_url:
        settings = Settings.from_env(
            {
                "SAFIRI_PAYMENT_DATABASE_URL": database_url,
                "SAFIRI_AMQP_URL": amqp_url,
                # The payments made here are never overdue: the provider is never asked.
                "SAFIRI_RECONCILE_AFTER_SECONDS": "86400",
            }
        )
        config = TelemetryConfig.from_env("payment", "0.1.0", {"OTEL_SDK_DISABLED": "true"})
        telemetry = Telemetry(config, CollectorRegistry(), None)
        client = TestClient(TestServer(create_app(settings, telemetry), host="127.0.0.1"))
        await client.start_server()
        try:
            yield Payment(client, str(client.make_url("")).rstrip("/"), database_url)
        finally:
            await client.close()


def _answer_fault(case: Case[Any], response: Response) -> str | None:
    content_type = (response.headers.get("content-type") or [""])[0]
    return problem_json_fault(response.status_code, content_type, response.content)


async def test_no_generated_callback_gets_a_server_error_or_moves_the_breaker(
    payment: Payment,
) -> None:
    awaiting = await payment.new_payments(150)

    def for_a_real_payment(case: Case[Any], data: st.DataObject) -> None:
        # A random payment id is refused before the body matters: half the callbacks name a
        # payment that is waiting, with its token and checkout id, so they reach the database.
        if not awaiting or not data.draw(st.booleans()):
            return
        target = awaiting.pop()
        case.path_parameters = {"payment_id": target.payment_id}
        case.query = {"token": target.token}
        stk = case.body.get("Body", {}) if isinstance(case.body, dict) else None
        callback = stk.get("stkCallback") if isinstance(stk, dict) else None
        if isinstance(callback, dict):
            callback["CheckoutRequestID"] = target.checkout_request_id

    before = await payment.metrics()
    sent, faults = await fuzz(
        CALLBACK_API,
        payment.base_url,
        examples=300,
        check=_answer_fault,
        prepare=for_a_real_payment,
    )
    after = await payment.metrics()
    assert faults == []
    assert sent >= 300
    assert len(awaiting) < 150 - 50  # the real payments were reached, not only random ids
    assert server_errors(after) == server_errors(before)
    assert breaker(after) == breaker(before)
    assert set(breaker(after)["payment_provider_circuit_state"].values()) == {0.0}  # closed


def _callback(**changes: object) -> dict[str, Any]:
    callback: dict[str, Any] = {
        "MerchantRequestID": "m-1",
        "CheckoutRequestID": "C",
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
    }
    return {"Body": {"stkCallback": callback | changes}}


def _raw(body: object) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


# Callbacks no schema describes, each for a payment that is waiting (so nothing is refused for
# a wrong id or token before the body is read).
REFUSED, SERVED = True, False
RAW = [
    pytest.param(b"{not json", REFUSED, id="not-json"),
    pytest.param(b"[" * 100_000, REFUSED, id="deep-nesting"),
    pytest.param(_raw(_callback(ResultCode=2**40)), REFUSED, id="result-code-beyond-int4"),
    pytest.param(
        b'{"Body": {"stkCallback": {"CheckoutRequestID": "C", "ResultCode": Infinity,'
        b' "ResultDesc": "x"}}}',
        REFUSED,
        id="infinite-result-code",
    ),
    pytest.param(_raw(_callback(ResultDesc="paid\x00")), REFUSED, id="nul-in-desc"),
    pytest.param(_raw(_callback(CallbackMetadata=[])), REFUSED, id="metadata-a-list"),
    pytest.param(_raw(_callback(CallbackMetadata=None)), SERVED, id="metadata-null"),
    pytest.param(
        _raw(
            _callback(CallbackMetadata={"Item": [{"Name": "MpesaReceiptNumber", "Value": "R\x00"}]})
        ),
        REFUSED,
        id="nul-in-receipt",
    ),
    pytest.param(_raw({"Body": "x"}), REFUSED, id="body-a-string"),
    pytest.param(b"{" + b" " * 3_000_000 + b"}", REFUSED, id="oversize"),
]


@pytest.mark.parametrize(("body", "refused"), RAW)
async def test_a_malformed_callback_is_refused_with_a_problem_never_a_5xx(
    payment: Payment, body: bytes, refused: bool
) -> None:
    (target,) = await payment.new_payments(1)
    before = await payment.metrics()
    path = CALLBACK_PATH.format(payment_id=target.payment_id) + f"?token={target.token}"
    answer = await send_raw(
        payment.base_url,
        b"POST " + path.encode() + b" HTTP/1.1\r\nContent-Type: application/json",
        body.replace(b'"C"', json.dumps(target.checkout_request_id).encode()),
    )
    after = await payment.metrics()
    assert problem_json_fault(answer.status, answer.content_type, answer.body) is None
    assert (400 <= answer.status < 500) is refused, answer
    assert server_errors(after) == server_errors(before)
    assert breaker(after) == breaker(before)

"""The public API over loopback HTTP: auth, validation, relaying, tracing, health.

Ticketing is a fake aiohttp app on another loopback port; idempotency keys live in a real
PostgreSQL database of this run's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_gateway.entrypoints.openapi import OPENAPI
from tests.conftest import free_port

from .gateway_harness import (
    API_KEY,
    AUTH,
    FULL_TRIP_ID,
    INTERNAL,
    OTHER_API_KEY,
    PHONE,
    TRIP,
    TRIP_ID,
    UNKNOWN_TRIP_ID,
    FakeTicketing,
    Gateway,
    assert_traced,
    fake_ticketing,
    gateway_settings,
    order_body,
    order_headers,
    problem_of,
    running_gateway,
    span_exporter,
)

pytestmark = pytest.mark.integration

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = span_exporter()
    yield exporter
    exporter.shutdown()


@pytest_asyncio.fixture(scope="module")
async def ticketing() -> AsyncIterator[FakeTicketing]:
    async with fake_ticketing() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module")
async def database_url(make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database("gateway_api")


@pytest_asyncio.fixture(scope="module")
async def gateway(
    spans: InMemorySpanExporter, ticketing: FakeTicketing, database_url: str
) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(ticketing.url, database_url)) as gateway:
        yield gateway


@pytest.fixture(autouse=True)
def fresh_ticketing(ticketing: FakeTicketing) -> Iterator[None]:
    ticketing.reset()
    yield
    ticketing.release()


# --- trips -----------------------------------------------------------------------------------


async def test_trips_are_relayed_in_the_public_shape(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    query = {"origin": "Nairobi", "destination": "Mombasa", "date": "2026-03-01"}
    response = await gateway.client.get("/api/v1/trips", params=query, headers=AUTH)

    assert response.status == 200
    assert await response.json() == {"trips": [TRIP]}
    assert_traced(response)
    assert [call.query for call in ticketing.calls("/trips")] == [query]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "date"),
        ({"date": "2026-02-30"}, "date"),
        ({"date": "01/03/2026"}, "date"),
        ({"date": "2026-03-01", "origin": "N" * 65}, "origin"),
    ],
)
async def test_a_bad_trip_search_is_400_naming_the_field(
    gateway: Gateway, ticketing: FakeTicketing, query: dict[str, str], field: str
) -> None:
    response = await gateway.client.get("/api/v1/trips", params=query, headers=AUTH)

    problem = await problem_of(response, 400, "invalid-query")
    assert problem["errors"][0]["field"] == field
    assert field in problem["detail"]
    assert ticketing.received == []


async def test_a_place_with_a_nul_byte_is_400_without_asking_ticketing(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    # Schemathesis found it: PostgreSQL cannot store NUL, ticketing failed, and the client's
    # mistake was reported as ticketing being unavailable (503).
    query = {"date": "2026-03-01", "destination": "Qd\x00c"}
    response = await gateway.client.get("/api/v1/trips", params=query, headers=AUTH)

    problem = await problem_of(response, 400, "invalid-query")
    assert problem["errors"] == [
        {"field": "destination", "message": "must not contain control characters"}
    ]
    assert ticketing.received == []


# --- placing orders --------------------------------------------------------------------------


async def test_an_order_is_accepted_with_202_and_its_location(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    response = await gateway.client.post(
        "/api/v1/orders", json=order_body(), headers=order_headers()
    )

    assert response.status == 202, await response.text()
    order = await response.json()
    assert order["status"] == "PENDING_PAYMENT"
    assert set(order) >= {"order_id", "status", "seats", "amount", "expires_at"}
    assert response.headers["Location"] == f"/api/v1/orders/{order['order_id']}"
    assert "Idempotent-Replayed" not in response.headers
    assert_traced(response)
    (placed,) = ticketing.calls("/orders")
    assert placed.body == {"trip_id": TRIP_ID, "seat_count": 2, "phone": PHONE}
    # The trace continues in ticketing: the gateway's trace id is in the upstream traceparent.
    assert placed.headers["traceparent"].split("-")[1] == response.headers["X-Trace-Id"]

    followed = await gateway.client.get(response.headers["Location"], headers=AUTH)
    assert followed.status == 200
    assert (await followed.json())["order_id"] == order["order_id"]


@pytest.mark.parametrize(
    ("phone", "normalised"),
    [
        ("+254712345678", "254712345678"),
        ("0712345678", "254712345678"),
        ("0110345678", "254110345678"),
    ],
)
async def test_local_phone_forms_reach_ticketing_in_254_form(
    gateway: Gateway, ticketing: FakeTicketing, phone: str, normalised: str
) -> None:
    response = await gateway.client.post(
        "/api/v1/orders", json=order_body(phone=phone), headers=order_headers()
    )

    assert response.status == 202
    assert ticketing.calls("/orders")[0].body["phone"] == normalised


def _oversized() -> str:
    return json.dumps({**order_body(), "padding": "x" * (16 * 1024)})


BAD_ORDERS: list[Any] = [
    pytest.param(order_headers("k"), '{"trip_id": ', 400, "malformed-json", None, id="malformed"),
    pytest.param(order_headers("k"), "", 400, "malformed-json", None, id="empty-body"),
    pytest.param(order_headers("k"), '{"seat_count": NaN}', 400, "malformed-json", None, id="nan"),
    pytest.param(order_headers("k"), "[" * 10_000, 400, "malformed-json", None, id="deep"),
    pytest.param(
        order_headers("k"),
        order_body(seat_count=0),
        422,
        "validation-error",
        "seat_count",
        id="seat-count-0",
    ),
    pytest.param(
        order_headers("k"),
        order_body(seat_count=7),
        422,
        "validation-error",
        "seat_count",
        id="seat-count-7",
    ),
    pytest.param(
        order_headers("k"),
        order_body(phone="0812345678"),
        422,
        "validation-error",
        "phone",
        id="bad-phone",
    ),
    pytest.param(
        order_headers("k"),
        order_body(trip_id="nope"),
        422,
        "validation-error",
        "trip_id",
        id="bad-trip-id",
    ),
    pytest.param(
        order_headers("k"),
        {**order_body(), "coupon": "x"},
        422,
        "validation-error",
        "coupon",
        id="unknown-field",
    ),
    pytest.param(
        order_headers("k"), [order_body()], 422, "validation-error", "body", id="not-an-object"
    ),
    pytest.param(AUTH, order_body(), 400, "idempotency-key-missing", None, id="no-key"),
    pytest.param(
        {**AUTH, "Idempotency-Key": "x" * 256},
        order_body(),
        400,
        "idempotency-key-invalid",
        None,
        id="long-key",
    ),
    pytest.param(order_headers("k"), _oversized(), 413, "payload-too-large", None, id="oversized"),
]


@pytest.mark.parametrize(("headers", "body", "status", "kind", "field"), BAD_ORDERS)
async def test_a_bad_order_is_refused_before_ticketing(
    gateway: Gateway,
    ticketing: FakeTicketing,
    headers: dict[str, str],
    body: Any,
    status: int,
    kind: str,
    field: str | None,
) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    response = await gateway.client.post("/api/v1/orders", data=data, headers={**headers, **JSON})

    problem = await problem_of(response, status, kind)
    if field is not None:
        assert field in {error["field"] for error in problem["errors"]}
    assert_traced(response)
    assert ticketing.received == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_an_order_that_is_not_json_is_415(
    gateway: Gateway, ticketing: FakeTicketing, content_type: str
) -> None:
    response = await gateway.client.post(
        "/api/v1/orders",
        data=json.dumps(order_body()),
        headers={**order_headers(), "Content-Type": content_type},
    )

    await problem_of(response, 415, "unsupported-media-type")
    assert ticketing.received == []


async def test_an_unknown_trip_is_relayed_as_ticketings_problem(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    response = await gateway.client.post(
        "/api/v1/orders", json=order_body(trip_id=UNKNOWN_TRIP_ID), headers=order_headers()
    )

    problem = await problem_of(response, 422, "unknown-trip")
    assert problem["title"] == "Unknown trip"
    assert problem["detail"] == "Unknown trip (from fake ticketing)"
    assert problem["instance"] == "/api/v1/orders"
    assert len(ticketing.calls("/orders")) == 1


async def test_seats_taken_are_relayed_as_409(gateway: Gateway) -> None:
    response = await gateway.client.post(
        "/api/v1/orders", json=order_body(trip_id=FULL_TRIP_ID), headers=order_headers()
    )

    await problem_of(response, 409, "seats-unavailable")


# --- reading orders --------------------------------------------------------------------------


async def test_an_order_id_that_is_not_a_uuid_is_404_without_asking_ticketing(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    response = await gateway.client.get("/api/v1/orders/not-a-uuid", headers=AUTH)

    await problem_of(response, 404, "order-not-found")
    assert ticketing.received == []


async def test_an_order_is_read_in_the_public_shape_whatever_else_ticketing_says(
    gateway: Gateway,
) -> None:
    placed = await gateway.client.post("/api/v1/orders", json=order_body(), headers=order_headers())
    accepted = await placed.json()
    response = await gateway.client.get(placed.headers["Location"], headers=AUTH)

    order = await response.json()
    assert response.status == 200, order
    assert order == accepted
    assert not set(INTERNAL) & (set(order) | set(accepted)), order


async def test_an_order_ticketing_describes_beyond_the_public_shape_is_503(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    order_id = "22222222-2222-4222-8222-222222222222"
    ticketing.orders[order_id] = {"order_id": order_id, "status": "MISLAID"}

    response = await gateway.client.get(f"/api/v1/orders/{order_id}", headers=AUTH)

    await problem_of(response, 503, "upstream-unavailable")


async def test_an_unknown_order_is_relayed_as_404(gateway: Gateway) -> None:
    response = await gateway.client.get(f"/api/v1/orders/{UNKNOWN_TRIP_ID}", headers=AUTH)

    await problem_of(response, 404, "order-not-found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/api/v1/orders", "POST"),
        ("DELETE", f"/api/v1/orders/{TRIP_ID}", "GET, HEAD"),
        ("PUT", "/api/v1/trips", "GET, HEAD"),
    ],
)
async def test_a_method_a_route_does_not_take_is_405_with_allow(
    gateway: Gateway, method: str, path: str, allowed: str
) -> None:
    response = await gateway.client.request(method, path, headers=AUTH)

    await problem_of(response, 405, "method-not-allowed")
    assert response.headers["Allow"] == allowed


# --- authentication --------------------------------------------------------------------------

REQUESTS = [
    ("GET", "/api/v1/trips?date=2026-03-01"),
    ("POST", "/api/v1/orders"),
    ("GET", f"/api/v1/orders/{TRIP_ID}"),
    ("GET", "/api/v1/no-such-route"),
]
BAD_CREDENTIALS = [
    {},
    {"Authorization": "Bearer wrong-key"},
    {"Authorization": f"Bearer {API_KEY}x"},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": "Bearer "},
    {"Authorization": API_KEY},
]


@pytest.mark.parametrize(("method", "path"), REQUESTS)
@pytest.mark.parametrize("credentials", BAD_CREDENTIALS)
async def test_a_missing_or_wrong_key_is_401(
    gateway: Gateway,
    ticketing: FakeTicketing,
    method: str,
    path: str,
    credentials: dict[str, str],
) -> None:
    response = await gateway.client.request(
        method, path, json=order_body(), headers={**credentials, "Idempotency-Key": "k"}
    )

    await problem_of(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert ticketing.received == []


@pytest.mark.parametrize("key", [API_KEY, OTHER_API_KEY])
async def test_every_configured_key_is_accepted(gateway: Gateway, key: str) -> None:
    response = await gateway.client.get(
        "/api/v1/trips", params={"date": "2026-03-01"}, headers={"Authorization": f"bearer {key}"}
    )

    assert response.status == 200


# --- upstream failures -----------------------------------------------------------------------


async def test_an_unreachable_ticketing_is_503(database_url: str) -> None:
    settings = gateway_settings(f"http://127.0.0.1:{free_port()}", database_url)
    async with running_gateway(settings) as gateway:
        trips = await gateway.client.get("/api/v1/trips?date=2026-03-01", headers=AUTH)
        order = await gateway.client.post(
            "/api/v1/orders", json=order_body(), headers=order_headers()
        )
        ready = await gateway.client.get("/readyz")

        await problem_of(trips, 503, "upstream-unavailable")
        await problem_of(order, 503, "upstream-unavailable")
        assert ready.status == 503
        assert (await ready.json())["checks"]["ticketing"].startswith("failing")


async def test_a_ticketing_stack_trace_never_reaches_the_client(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    ticketing.failures = 1
    response = await gateway.client.post(
        "/api/v1/orders", json=order_body(), headers=order_headers()
    )

    problem = await problem_of(response, 503, "upstream-unavailable")
    assert "boom" not in json.dumps(problem)


# --- operability -----------------------------------------------------------------------------


async def test_health_readiness_and_metrics_need_no_key(gateway: Gateway) -> None:
    health = await gateway.client.get("/healthz")
    ready = await gateway.client.get("/readyz")
    metrics = await gateway.client.get("/metrics")

    assert health.status == 200
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"database": "ok", "ticketing": "ok"}
    assert metrics.status == 200
    assert "http_server_request_duration_seconds" in await metrics.text()


async def test_metrics_are_refused_to_a_client_outside_the_allowed_networks(
    ticketing: FakeTicketing, database_url: str
) -> None:
    """The public port serves /metrics to SAFIRI_METRICS_ALLOWED_NETWORKS only: this test's
    client is on loopback, so a list without loopback must refuse it (and keep health open)."""
    settings = dataclasses.replace(
        gateway_settings(ticketing.url, database_url),
        metrics_allowed_networks=(ipaddress.ip_network("10.0.0.0/8"),),
    )
    async with running_gateway(settings) as gateway:
        refused = await gateway.client.get("/metrics")
        assert refused.status == 403
        assert refused.content_type == "application/problem+json"
        assert "SAFIRI_METRICS_ALLOWED_NETWORKS" in (await refused.json())["detail"]
        assert (await gateway.client.get("/healthz")).status == 200


async def test_the_openapi_document_is_served_without_a_key(gateway: Gateway) -> None:
    response = await gateway.client.get("/api/v1/openapi.json")

    assert response.status == 200
    assert await response.json() == OPENAPI


EVERY_KIND_OF_RESPONSE = [
    ("GET", "/healthz", {}),
    ("GET", "/readyz", {}),
    ("GET", "/metrics", {}),
    ("GET", "/api/v1/openapi.json", {}),
    ("GET", "/api/v1/trips?date=2026-03-01", AUTH),
    ("GET", "/api/v1/trips", AUTH),
    ("GET", "/api/v1/trips", {}),
    ("GET", "/nowhere", {}),
    ("DELETE", "/api/v1/orders", AUTH),
]


@pytest.mark.parametrize(("method", "path", "headers"), EVERY_KIND_OF_RESPONSE)
async def test_every_response_carries_the_trace(
    gateway: Gateway, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await gateway.client.request(method, path, headers=headers)

    assert_traced(response)
    if response.status >= 400:
        body = await response.json(content_type=None)
        assert response.content_type == "application/problem+json"
        assert body["trace_id"] == response.headers["X-Trace-Id"]


async def test_business_steps_are_spans_in_the_request_trace(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    response = await gateway.client.post(
        "/api/v1/orders", json=order_body(), headers=order_headers()
    )
    order_id = (await response.json())["order_id"]
    trace_id = int(response.headers["X-Trace-Id"], 16)

    steps = {
        span.name: dict(span.attributes or {})
        for span in spans.get_finished_spans()
        if span.context is not None and span.context.trace_id == trace_id
    }
    claim, request = steps["claim_idempotency_key"], steps["request_order"]
    assert claim["safiri.idempotency.replayed"] is False
    assert claim["safiri.trip.id"] == TRIP_ID
    assert claim["safiri.seat_count"] == 2
    assert request["safiri.order.id"] == order_id
    assert "POST /api/v1/orders" in steps


async def test_logs_never_hold_the_api_key_or_the_whole_phone(gateway: Gateway) -> None:
    start = len(gateway.logs.getvalue())
    await gateway.client.post("/api/v1/orders", json=order_body(), headers=order_headers())
    await gateway.client.get("/api/v1/trips", headers={"Authorization": "Bearer not-a-key-5f3a"})

    logs = gateway.logs.getvalue()[start:]
    assert "order request answered" in logs
    assert API_KEY not in logs
    assert "not-a-key-5f3a" not in logs
    assert PHONE not in logs
    lines = [json.loads(line) for line in logs.splitlines()]
    answered = [line for line in lines if line["message"] == "order request answered"]
    assert answered
    assert all(line["trace_id"] and line["trip_id"] == TRIP_ID for line in answered)


async def test_the_gateway_refuses_to_start_without_api_keys() -> None:
    env = {k: v for k, v in os.environ.items() if k != "SAFIRI_API_KEYS"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "safiri_gateway",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 2
    assert "SAFIRI_API_KEYS" in stderr.decode()

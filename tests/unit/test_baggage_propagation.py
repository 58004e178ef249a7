"""W3C baggage travels with the trace: through a server span, a stored carrier and a message.

The gateway puts the client (a hash of its API key) in baggage; payment chooses the canary arm
by it. Each hop resumes a context it was given (request headers, an outbox row, message
headers) through ``safiri_telemetry``: these tests prove the baggage in that context is current
inside the resumed span, so that whatever the step sends on (an HTTP call, an outbox row, a
message) carries it too, and that it is current no longer once the step ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import baggage, propagate
from opentelemetry import context as otel_context
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_telemetry import (
    Telemetry,
    business_span,
    consume_span,
    context_from_carrier,
    inject_carrier,
    publish_span,
)
from tests.conftest import serving

pytestmark = pytest.mark.unit

CLIENT = "safiri.client"


def test_the_global_propagator_carries_baggage_beside_the_trace_context() -> None:
    assert {"traceparent", "baggage"} <= propagate.get_global_textmap().fields


def _carrier_with_client(client: str) -> dict[str, str]:
    token = otel_context.attach(baggage.set_baggage(CLIENT, client))
    try:
        with business_span("place_order"):
            return inject_carrier()
    finally:
        otel_context.detach(token)


def test_a_stored_carrier_resumed_as_parent_makes_its_baggage_current(
    spans: InMemorySpanExporter,
) -> None:
    """The outbox row's context, resumed by the relay: its publish headers keep the baggage."""
    row = _carrier_with_client("c-123")
    assert row["baggage"] == f"{CLIENT}=c-123"
    assert baggage.get_baggage(CLIENT) is None
    headers: dict[str, str] = {}
    with publish_span(
        "safiri.events",
        "ticketing.payment.requested",
        "m-1",
        headers,
        parent=(context_from_carrier(row)),
    ):
        assert baggage.get_baggage(CLIENT) == "c-123"
    assert headers["baggage"] == f"{CLIENT}=c-123"
    assert headers["traceparent"].split("-")[1] == row["traceparent"].split("-")[1]
    assert baggage.get_baggage(CLIENT) is None  # nothing leaks past the step


def test_a_consumer_span_makes_the_message_baggage_current(spans: InMemorySpanExporter) -> None:
    headers = _carrier_with_client("c-456")
    with consume_span("payment.requests", "ticketing.payment.requested", "m-2", headers):
        assert baggage.get_baggage(CLIENT) == "c-456"
        # What the handler stores with its own rows (payment's trace_context) keeps it.
        assert inject_carrier()["baggage"] == f"{CLIENT}=c-456"
    assert baggage.get_baggage(CLIENT) is None


def test_business_span_without_a_parent_keeps_the_current_baggage() -> None:
    token = otel_context.attach(baggage.set_baggage(CLIENT, "c-789"))
    try:
        with business_span("request_payment"):
            assert baggage.get_baggage(CLIENT) == "c-789"
    finally:
        otel_context.detach(token)


@pytest_asyncio.fixture
async def downstream() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/next", record)
    async with serving(app) as base:
        yield base, seen


async def test_a_server_span_passes_the_request_baggage_to_the_calls_it_makes(
    downstream: tuple[str, list[dict[str, str]]],
) -> None:
    """Gateway → ticketing: the baggage a request brings is on the calls its handler makes."""
    base, seen = downstream
    # Nothing exported: an exporter left retrying an unreachable endpoint would draw on the
    # global random module (its backoff jitter) under a later hypothesis test.
    telemetry = Telemetry.setup(
        "baggage-svc",
        install_global=False,
        env={"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"},
    )
    observed: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        observed.append(str(baggage.get_baggage(CLIENT)))
        async with telemetry.client_session() as session, session.get(f"{base}/next") as r:
            assert r.status == 200
        return web.json_response({})

    app = web.Application()
    app.middlewares.insert(0, telemetry.middleware)
    app.router.add_get("/work", handler)
    async with (
        serving(app) as url,
        aiohttp.ClientSession() as http,
        http.get(f"{url}/work", headers={"baggage": f"{CLIENT}=c-web"}) as response,
    ):
        assert response.status == 200
    assert observed == ["c-web"]
    assert seen[0]["baggage"] == f"{CLIENT}=c-web"

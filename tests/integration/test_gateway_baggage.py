"""The gateway names the client to the services behind it as W3C baggage (``safiri.client``).

Payment chooses a payment's canary arm by the client (deploy/flags/flags.json targets client
ids), and only the gateway knows it: the API key's hash travels with the trace. The key itself
never leaves the gateway, and baggage a caller sends is not passed on (a caller must not choose
its own arm, nor plant entries the services would trust).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_gateway.entrypoints.auth import client_id

from .gateway_harness import (
    API_KEY,
    OTHER_API_KEY,
    FakeTicketing,
    Gateway,
    fake_ticketing,
    gateway_settings,
    order_body,
    running_gateway,
    span_exporter,
)

pytestmark = pytest.mark.integration


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
async def gateway(
    spans: InMemorySpanExporter,
    ticketing: FakeTicketing,
    make_database: Callable[[str], Awaitable[str]],
) -> AsyncIterator[Gateway]:
    settings = gateway_settings(ticketing.url, await make_database("gateway_baggage"))
    async with running_gateway(settings) as gateway:
        yield gateway


async def _order_headers_seen(
    gateway: Gateway, ticketing: FakeTicketing, key: str, **extra: str
) -> dict[str, str]:
    ticketing.reset()
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"k-{id(extra)}-{key}"}
    response = await gateway.client.post(
        "/api/v1/orders", json=order_body(), headers={**headers, **extra}
    )
    assert response.status == 202, await response.text()
    (placed,) = ticketing.calls("/orders")
    return placed.headers


async def test_each_key_s_client_id_reaches_ticketing_as_baggage_and_no_key_does(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    seen = {
        key: await _order_headers_seen(gateway, ticketing, key) for key in (API_KEY, OTHER_API_KEY)
    }
    for key, headers in seen.items():
        assert headers["baggage"] == f"safiri.client={client_id(key)}"
        assert key not in " ".join(f"{k}: {v}" for k, v in headers.items() if k != "Authorization")
        assert "Authorization" not in headers
    assert client_id(API_KEY) != client_id(OTHER_API_KEY)


async def test_baggage_a_caller_sends_is_not_passed_on(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    forged = {"baggage": "safiri.client=someone-else,safiri.canary.variant=canary,x=1"}
    headers = await _order_headers_seen(gateway, ticketing, API_KEY, **forged)
    assert headers["baggage"] == f"safiri.client={client_id(API_KEY)}"


async def test_a_search_carries_the_client_too(gateway: Gateway, ticketing: FakeTicketing) -> None:
    ticketing.reset()
    response = await gateway.client.get(
        "/api/v1/trips",
        params={"date": "2026-03-01"},
        headers={"Authorization": f"Bearer {OTHER_API_KEY}", "baggage": "safiri.client=x"},
    )
    assert response.status == 200
    (searched,) = ticketing.calls("/trips")
    assert searched.headers["baggage"] == f"safiri.client={client_id(OTHER_API_KEY)}"

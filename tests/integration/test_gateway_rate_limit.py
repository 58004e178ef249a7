"""The gateway's per-API-key rate limit: a burst passes, the next request is a 429 problem
with Retry-After, counted, never relayed to ticketing; other clients are not affected."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from .gateway_harness import (
    AUTH,
    OTHER_API_KEY,
    FakeTicketing,
    Gateway,
    fake_ticketing,
    gateway_settings,
    problem_of,
    running_gateway,
    span_exporter,
)

pytestmark = pytest.mark.integration
SEARCH = "/api/v1/trips?origin=Nairobi&destination=Mombasa&date=2030-01-02"


@pytest.fixture(scope="module", autouse=True)
def traced() -> Iterator[None]:
    """Problems carry the trace id: the middleware needs an SDK provider to record."""
    exporter = span_exporter()
    yield
    exporter.shutdown()


@pytest_asyncio.fixture
async def ticketing() -> AsyncIterator[FakeTicketing]:
    async with fake_ticketing() as fake:
        yield fake


@pytest_asyncio.fixture
async def gateway(
    ticketing: FakeTicketing, make_database: Callable[[str], Awaitable[str]]
) -> AsyncIterator[Gateway]:
    settings = gateway_settings(ticketing.url, await make_database("gateway_rate"))
    # Bursts of 3, refilled one per 10 s: the fourth quick request is over the limit.
    limited = dataclasses.replace(settings, rate_limit_per_second=0.1, rate_limit_burst=3)
    async with running_gateway(limited) as gateway:
        yield gateway


async def test_past_its_burst_a_client_gets_429_with_retry_after(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    for _ in range(3):
        async with gateway.client.get(SEARCH, headers=AUTH) as response:
            assert response.status == 200
    async with gateway.client.get(SEARCH, headers=AUTH) as response:
        problem = await problem_of(response, 429, "rate-limited")
        assert response.headers["Retry-After"] == "10"
    assert "0.1 requests per second" in problem["detail"]
    assert len(ticketing.calls("/trips")) == 3  # the refused one never reached ticketing

    other = {"Authorization": f"Bearer {OTHER_API_KEY}"}
    async with gateway.client.get(SEARCH, headers=other) as response:
        assert response.status == 200  # another client has a bucket of its own

    async with gateway.client.get("/metrics") as response:
        families = text_string_to_metric_families(await response.text())
        limited = next(f for f in families if f.name == "gateway_rate_limited")
    assert [s.value for s in limited.samples if s.name.endswith("_total")] == [1.0]

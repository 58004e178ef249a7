"""The gateway's per-API-key rate limit: a burst passes, the next request is a 429 problem
with Retry-After, counted, never relayed to ticketing; other clients are not affected."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import eventually, free_port

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


@pytest_asyncio.fixture
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    """A Redis server of the test's own (never the machine's), on a free port."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def listening() -> bool | None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                return None
            writer.close()
            return True

        await eventually(listening, what="redis-server to listen")
        yield f"async+redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        await process.wait()


async def _alternate(gateways: list[Gateway], requests: int) -> list[int]:
    statuses = []
    for n in range(requests):
        async with gateways[n % len(gateways)].client.get(SEARCH, headers=AUTH) as response:
            statuses.append(response.status)
    return statuses


async def test_two_replicas_sharing_redis_hold_one_limit_per_client(
    ticketing: FakeTicketing,
    make_database: Callable[[str], Awaitable[str]],
    redis_url: str,
) -> None:
    base = gateway_settings(ticketing.url, await make_database("gateway_rate_shared"))
    limited = dataclasses.replace(base, rate_limit_per_second=0.1, rate_limit_burst=3)
    shared = dataclasses.replace(limited, rate_limit_storage=redis_url)
    async with running_gateway(shared) as a, running_gateway(shared) as b:
        statuses = await _alternate([a, b], 8)
    assert statuses.count(200) == 3, statuses  # one client's burst, across both replicas
    assert statuses.count(429) == 5
    # Counted in each process, the same two replicas would let twice the limit through:
    async with running_gateway(limited) as a, running_gateway(limited) as b:
        assert (await _alternate([a, b], 8)).count(200) == 6


async def test_with_its_store_down_the_limit_lets_requests_through_and_says_so(
    ticketing: FakeTicketing, make_database: Callable[[str], Awaitable[str]]
) -> None:
    base = gateway_settings(ticketing.url, await make_database("gateway_rate_down"))
    nowhere = dataclasses.replace(
        base,
        rate_limit_per_second=0.1,
        rate_limit_burst=1,
        rate_limit_storage=f"async+redis://127.0.0.1:{free_port()}",
    )
    async with running_gateway(nowhere) as gateway:
        assert await _alternate([gateway], 3) == [200, 200, 200]
        async with gateway.client.get("/metrics") as response:
            text = await response.text()
    assert "gateway_rate_limit_errors_total 3.0" in text
    assert '"rate limit store unreachable; request allowed"' in gateway.logs.getvalue()

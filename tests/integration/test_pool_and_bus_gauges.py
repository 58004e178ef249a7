"""Pool and fleet gauges on a real PostgreSQL; each service's /metrics with every gauge wired."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from safiri_payment.bootstrap import create_app as create_payment_app
from safiri_payment.settings import Settings as PaymentSettings
from safiri_telemetry import ConnectionPoolCollector, Telemetry, TelemetryConfig
from safiri_ticketing.adapters.fleet import FleetPositions
from safiri_ticketing.adapters.seed import apply_schema
from safiri_ticketing.bootstrap import create_app as create_ticketing_app
from safiri_ticketing.domain.fleet import Position
from safiri_ticketing.settings import Settings as TicketingSettings
from tests.conftest import eventually, own_vhost, promtool_check_metrics, serving

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def own_vhost_url(run_id: str) -> Iterator[str]:
    """A vhost for the services started here, so their queues never meet the e2e suite's."""
    with own_vhost(f"safiri-test-{run_id}-gauges") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def ticketing_db(make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database("gauges_ticketing")


@pytest_asyncio.fixture(scope="module")
async def pool(ticketing_db: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(ticketing_db, min_size=1, max_size=5)
    assert pool is not None
    await apply_schema(pool)
    try:
        yield pool
    finally:
        await pool.close()


async def test_the_pool_collector_counts_the_connections_in_use(pool: asyncpg.Pool[Any]) -> None:
    registry = CollectorRegistry()
    registry.register(ConnectionPoolCollector(pool, pool_name="ticketing"))

    def usage(state: str) -> float | None:
        labels = {
            "db_client_connection_state": state,
            "db_client_connection_pool_name": "ticketing",
        }
        return registry.get_sample_value("db_client_connection_count", labels)

    held = [await pool.acquire() for _ in range(3)]
    try:
        assert usage("used") == 3
        assert usage("idle") == pool.get_size() - 3
        maximum = registry.get_sample_value(
            "db_client_connection_max", {"db_client_connection_pool_name": "ticketing"}
        )
        assert maximum == 5
    finally:
        for conn in held:
            await pool.release(conn)
    assert usage("used") == 0


async def add_trip(pool: asyncpg.Pool[Any], bus_id: str, departs: str, arrives: str) -> str:
    trip_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO trips (trip_id, origin, destination, departs_at, arrives_at, bus_id, fare,"
        f" seats_total) VALUES ($1::uuid, 'Nairobi', $2, now() + interval '{departs}',"
        f" now() + interval '{arrives}', $3, 600, 10)",
        trip_id,
        f"Fleet-{uuid.uuid4().hex[:8]}",
        bus_id,
    )
    return trip_id


def telemetry_for(service: str) -> Telemetry:
    """A service's telemetry without touching the process-wide tracer or log sink."""
    config = TelemetryConfig.from_env(service, "0.1.0", {"OTEL_SDK_DISABLED": "true"})
    return Telemetry(config, CollectorRegistry(), None)


def scrape_probe(
    base_url: str, ready: Callable[[Samples], bool]
) -> Callable[[], Awaitable[tuple[str, Samples] | None]]:
    async def probe() -> tuple[str, Samples] | None:
        async with aiohttp.ClientSession() as http, http.get(f"{base_url}/metrics") as response:
            text = await response.text()
        samples: Samples = {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        return (text, samples) if ready(samples) else None

    return probe


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def queue_gauges_ready(queue: str) -> Callable[[Samples], bool]:
    def ready(samples: Samples) -> bool:
        q = {"messaging_destination_name": queue}
        dlq = {"messaging_destination_name": f"{queue}.dlq"}
        return (
            sample(samples, "messaging_queue_consumers", **q) == 1
            and sample(samples, "messaging_queue_backlog_messages", **q) == 0
            and sample(samples, "messaging_queue_backlog_messages", **dlq) == 0
        )

    return ready


async def test_ticketing_serves_its_queue_outbox_pool_and_fleet_gauges(
    own_vhost_url: str, ticketing_db: str, pool: asyncpg.Pool[Any]
) -> None:
    settings = TicketingSettings.from_env(
        {
            "SAFIRI_TICKETING_DATABASE_URL": ticketing_db,
            "SAFIRI_AMQP_URL": own_vhost_url,
            "SAFIRI_SEED_DAYS": "0",
            "SAFIRI_QUEUE_POLL_SECONDS": "0.1",
            "SAFIRI_TICKETING_DB_POOL_MAX": "7",
        }
    )
    assert settings.queue_poll_seconds == 0.1
    async with serving(create_ticketing_app(settings, telemetry_for("ticketing"))) as base_url:
        bus = f"KWIRE-{uuid.uuid4().hex[:6]}"
        trip_id = await add_trip(pool, bus, "-1 hour", "1 hour")
        # A bus that reports counts (tests/integration/test_fleet_positions.py for the rest).
        await FleetPositions(pool).record(Position(bus, trip_id, -1.0, 36.9, datetime.now(UTC)))
        ready = queue_gauges_ready("ticketing.payment-results")
        text, samples = await eventually(
            scrape_probe(
                base_url, lambda s: ready(s) and (sample(s, "active_buses_count") or 0) >= 1
            ),
            what="ticketing's gauges",
        )
    assert sample(samples, "safiri_outbox_backlog_messages") == 0
    assert sample(samples, "safiri_outbox_oldest_age_seconds") == 0
    assert (
        sample(samples, "db_client_connection_max", db_client_connection_pool_name="ticketing") == 7
    )
    used = sample(
        samples,
        "db_client_connection_count",
        db_client_connection_state="used",
        db_client_connection_pool_name="ticketing",
    )
    assert used is not None and used >= 1  # the outbox relay holds its LISTEN connection
    assert promtool_check_metrics(text) == []


async def test_payment_serves_its_queue_outbox_and_pool_gauges(
    own_vhost_url: str, make_database: Callable[[str], Awaitable[str]]
) -> None:
    settings = PaymentSettings.from_env(
        {
            "SAFIRI_PAYMENT_DATABASE_URL": await make_database("gauges_payment"),
            "SAFIRI_AMQP_URL": own_vhost_url,
            "SAFIRI_QUEUE_POLL_SECONDS": "0.1",
        }
    )
    async with serving(create_payment_app(settings, telemetry_for("payment"))) as base_url:
        text, samples = await eventually(
            scrape_probe(base_url, queue_gauges_ready("payment.requests")),
            what="payment's gauges",
        )
    assert sample(samples, "safiri_outbox_backlog_messages") == 0
    assert (
        sample(samples, "db_client_connection_max", db_client_connection_pool_name="payment") == 10
    )
    assert promtool_check_metrics(text) == []

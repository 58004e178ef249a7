"""The live bus map on a real RabbitMQ and PostgreSQL: the fleet simulator learns the trips
under way from ticketing's internal API, publishes GPS fixes, ticketing keeps the latest one
per bus, ``active_buses_count`` counts the buses reporting, and the Control Tower's Geomap
query reads them back with their latitude and longitude.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from safiri_contracts import DEAD_LETTER_REASON_HEADER, EVENTS_EXCHANGE, FLEET_POSITIONS
from safiri_fleet_sim.app import REPORTER
from safiri_fleet_sim.app import create_app as create_fleet_app
from safiri_fleet_sim.settings import Settings as FleetSettings
from safiri_telemetry import Telemetry, TelemetryConfig
from safiri_ticketing.adapters.fleet import ActiveBuses, FleetPositions
from safiri_ticketing.adapters.seed import apply_schema
from safiri_ticketing.bootstrap import create_app as create_ticketing_app
from safiri_ticketing.domain.fleet import BusNotOnTrip, Position
from safiri_ticketing.metrics import TicketingMetrics
from safiri_ticketing.settings import Settings as TicketingSettings
from tests.conftest import eventually, own_vhost, serving
from tests.deploy.test_dashboards import SQL_QUERIES

pytestmark = pytest.mark.integration


def telemetry_for(service: str) -> Telemetry:
    config = TelemetryConfig.from_env(service, "0.1.0", {"OTEL_SDK_DISABLED": "true"})
    return Telemetry(config, CollectorRegistry(), None)


@pytest.fixture(scope="module")
def vhost(run_id: str) -> Iterator[str]:
    with own_vhost(f"safiri-test-{run_id}-fleet") as url:
        yield url


@pytest_asyncio.fixture(scope="module")
async def database(make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database("fleet")


@pytest_asyncio.fixture(scope="module")
async def pool(database: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    assert pool is not None
    await apply_schema(pool)
    try:
        yield pool
    finally:
        await pool.close()


_DEPARTURES = iter(range(1, 10_000))


async def trip_under_way(
    pool: asyncpg.Pool[Any], bus_id: str, origin: str = "Nairobi", destination: str = "Nakuru"
) -> str:
    """A trip of ``bus_id`` that left a while ago and arrives later (unique departure)."""
    trip_id = str(uuid.uuid4())
    minutes = next(_DEPARTURES)
    await pool.execute(
        "INSERT INTO trips (trip_id, origin, destination, departs_at, arrives_at, bus_id, fare,"
        " seats_total) VALUES ($1::uuid, $2, $3, now() - make_interval(mins => $4),"
        " now() + interval '2 hours', $5, 600, 10)",
        trip_id,
        origin,
        destination,
        minutes,
        bus_id,
    )
    return trip_id


def fix(bus_id: str, trip_id: str, at: datetime, latitude: float = -1.0) -> Position:
    return Position(bus_id, trip_id, latitude, 36.5, at, speed_kmh=80.0, heading_degrees=300.0)


# ------------------------------------------------------------------------------ the store


async def test_the_newest_fix_wins_and_a_late_older_one_changes_nothing(
    pool: asyncpg.Pool[Any],
) -> None:
    bus = f"KNEW{uuid.uuid4().hex[:4]}"
    trip = await trip_under_way(pool, bus)
    positions = FleetPositions(pool)
    now = datetime.now(UTC)
    assert await positions.record(fix(bus, trip, now - timedelta(seconds=30), -1.1)) is True
    assert await positions.record(fix(bus, trip, now, -1.2)) is True
    assert await positions.record(fix(bus, trip, now - timedelta(seconds=10), -1.3)) is False
    row = await pool.fetchrow("SELECT * FROM bus_positions WHERE bus_id = $1", bus)
    assert row is not None
    assert (row["latitude"], row["recorded_at"]) == (-1.2, now)
    assert await pool.fetchval("SELECT count(*) FROM bus_positions WHERE bus_id = $1", bus) == 1


async def test_a_fix_for_a_bus_not_on_its_trip_is_refused(pool: asyncpg.Pool[Any]) -> None:
    trip = await trip_under_way(pool, f"KOWN{uuid.uuid4().hex[:4]}")
    with pytest.raises(BusNotOnTrip):
        await FleetPositions(pool).record(fix("KSTRAY", trip, datetime.now(UTC)))
    with pytest.raises(BusNotOnTrip):
        await FleetPositions(pool).record(fix("KSTRAY", str(uuid.uuid4()), datetime.now(UTC)))


async def test_active_buses_counts_each_bus_that_reported_lately_once(
    pool: asyncpg.Pool[Any],
) -> None:
    registry = CollectorRegistry()
    active = ActiveBuses(pool, TicketingMetrics(registry).active_buses)
    await active.refresh()
    before = registry.get_sample_value("active_buses_count")
    assert before is not None
    positions = FleetPositions(pool)
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:4]
    for bus, ago in ((f"KA{tag}", 5), (f"KB{tag}", 50), (f"KC{tag}", 60 * 30)):
        trip = await trip_under_way(pool, bus)
        await positions.record(fix(bus, trip, now - timedelta(seconds=ago)))
        await positions.record(fix(bus, trip, now - timedelta(seconds=ago + 1)))  # same bus
    await active.refresh()
    # The two that reported within the window; the one silent for half an hour is not.
    assert registry.get_sample_value("active_buses_count") == before + 2


# --------------------------------------------------- simulator -> RabbitMQ -> ticketing


def metric(text: str, name: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


async def test_fixes_over_the_bus_reach_the_map_and_the_gauge_counts_the_buses_reporting(
    vhost: str, database: str, pool: asyncpg.Pool[Any], spans: InMemorySpanExporter
) -> None:
    await pool.execute("DELETE FROM bus_positions")
    tag = uuid.uuid4().hex[:4]
    ours = {
        await trip_under_way(pool, f"KM{tag}", "Nairobi", "Mombasa"): f"KM{tag}",
        await trip_under_way(pool, f"KK{tag}", "Kisumu", "Nairobi"): f"KK{tag}",
    }
    # On the road by the timetable, but in a town the simulator cannot place: it never
    # reports, so it is not on the map and not counted.
    silent = f"KG{tag}"
    await trip_under_way(pool, silent, "Nairobi", "Garissa")
    ticketing_settings = TicketingSettings.from_env(
        {
            "SAFIRI_TICKETING_DATABASE_URL": database,
            "SAFIRI_AMQP_URL": vhost,
            "SAFIRI_SEED_DAYS": "0",
            "SAFIRI_QUEUE_POLL_SECONDS": "0.1",
        }
    )
    async with serving(
        create_ticketing_app(ticketing_settings, telemetry_for("ticketing"))
    ) as ticketing_url:
        fleet_settings = FleetSettings.from_env(
            {
                "SAFIRI_AMQP_URL": vhost,
                "SAFIRI_TICKETING_URL": ticketing_url,
                "SAFIRI_FLEET_SIM_FIX_INTERVAL_SECONDS": "0.2",
                "SAFIRI_FLEET_SIM_TRIPS_REFRESH_SECONDS": "0.5",
            }
        )
        fleet_app = create_fleet_app(fleet_settings, telemetry_for("fleet-simulator"))
        async with serving(fleet_app):
            reporter = fleet_app[REPORTER]

            async def reported_twice() -> bool:
                return set(ours.values()) <= set(reporter.published) and reporter.rounds >= 2

            await eventually(reported_twice, what="two rounds of fixes from our buses")

            async def stored() -> list[asyncpg.Record] | None:
                rows = await pool.fetch("SELECT * FROM bus_positions")
                return rows if {r["bus_id"] for r in rows} >= set(reporter.published) else None

            rows = await eventually(stored, what="every bus that reported, in bus_positions")
            for row in rows:
                if row["bus_id"] in ours.values():
                    assert str(row["trip_id"]) in ours

            async def gauge() -> tuple[float, int] | None:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"{ticketing_url}/metrics") as response,
                ):
                    text = await response.text()
                value = metric(text, "active_buses_count")
                reporting = len(reporter.published)
                return (value, reporting) if value == reporting else None

            value, reporting = await eventually(gauge, what="active_buses_count = buses reporting")
            assert reporting >= len(ours)
            assert silent not in reporter.published
            under_way = await pool.fetchval(
                "SELECT count(DISTINCT bus_id) FROM trips"
                " WHERE departs_at <= now() AND now() < arrives_at"
            )
            assert value < under_way  # the timetable's count is not what the gauge shows
            async with aiohttp.ClientSession() as http, http.get(f"{ticketing_url}/metrics") as r:
                exposition = await r.text()
            for bus in reporter.published:
                assert bus not in exposition  # a bus id is never a metric label

    # The Control Tower's Geomap query, as Grafana runs it, on the fixes really consumed.
    assert SQL_QUERIES, "the Control Tower has no PostgreSQL panel"
    conn = await asyncpg.connect(database)
    try:
        for ident, sql in SQL_QUERIES:
            found = await conn.fetch(sql)
            assert found, f"{ident}: no rows"
            for row in found:
                assert -90 <= row["latitude"] <= 90, (ident, dict(row))
                assert -180 <= row["longitude"] <= 180, (ident, dict(row))
            assert set(ours.values()) <= {r["bus_id"] for r in found}, ident
            assert silent not in {r["bus_id"] for r in found}, ident
    finally:
        await conn.close()

    # One trace per fix: ticketing's consumer span is a child of the simulator's publish span.
    finished = spans.get_finished_spans()
    producers = {
        s.context.span_id: s
        for s in finished
        if s.kind is SpanKind.PRODUCER
        and s.attributes
        and s.attributes.get("messaging.rabbitmq.destination.routing_key")
        == "fleet.position.reported"
    }
    consumers = [
        s
        for s in finished
        if s.kind is SpanKind.CONSUMER and s.name == f"process {FLEET_POSITIONS.name}"
    ]
    assert producers and consumers
    for consumer in consumers:
        assert consumer.parent is not None
        parent = producers.get(consumer.parent.span_id)
        assert parent is not None, "a consumer span outside its fix's trace"
        assert parent.context.trace_id == consumer.context.trace_id


async def test_a_poison_fix_is_dead_lettered_with_its_reason_and_the_next_one_lands(
    vhost: str, database: str, pool: asyncpg.Pool[Any]
) -> None:
    bus = f"KP{uuid.uuid4().hex[:4]}"
    trip = await trip_under_way(pool, bus)
    settings = TicketingSettings.from_env(
        {
            "SAFIRI_TICKETING_DATABASE_URL": database,
            "SAFIRI_AMQP_URL": vhost,
            "SAFIRI_SEED_DAYS": "0",
        }
    )
    good = {
        "bus_id": bus,
        "trip_id": trip,
        "latitude": -0.9,
        "longitude": 36.4,
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    bodies = [
        (json.dumps({**good, "latitude": 123.0}), "latitude"),  # off the planet
        (json.dumps({**good, "bus_id": "KSTRAY"}), "not on trip"),  # another bus's trip
        (b"{not json", "not JSON"),
        (json.dumps(good), None),
    ]
    async with serving(create_ticketing_app(settings, telemetry_for("ticketing"))):
        connection = await aio_pika.connect_robust(vhost)
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange(EVENTS_EXCHANGE)
            for body, _ in bodies:
                await exchange.publish(
                    aio_pika.Message(
                        body if isinstance(body, bytes) else body.encode(),
                        message_id=str(uuid.uuid4()),
                    ),
                    routing_key="fleet.position.reported",
                )
            dlq = await channel.declare_queue(FLEET_POSITIONS.dead_letter_queue, passive=True)
            reasons: list[str] = []

            async def parked() -> bool:
                message = await dlq.get(fail=False, no_ack=True)
                if message is not None:
                    reasons.append(str((message.headers or {})[DEAD_LETTER_REASON_HEADER]))
                return len(reasons) == 3

            await eventually(parked, what="three poison fixes in the DLQ")
            for _, expected in bodies[:3]:  # handled concurrently: in any order
                assert expected is not None
                assert any(expected in reason for reason in reasons), (expected, reasons)

            async def landed() -> bool:
                latitude = await pool.fetchval(
                    "SELECT latitude FROM bus_positions WHERE bus_id = $1", bus
                )
                return latitude == -0.9

            await eventually(landed, what="the good fix after the poison ones")
        finally:
            await connection.close()

"""The one place that wires ticketing's real adapters: PostgreSQL, RabbitMQ, the clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from loguru import logger

from safiri_messaging import (
    MessagingMetrics,
    broker_connected,
    repeat_forever,
    running_messaging,
    stop_task,
)
from safiri_telemetry import ConnectionPoolCollector, Telemetry
from safiri_web import add_operations_routes, database_pool, problem_middleware

from .adapters.fleet import ActiveBuses, FleetPositions
from .adapters.order_book import PendingOrders
from .adapters.postgres import PostgresUnitOfWork, TripQueries
from .adapters.seed import apply_schema, seed_timetable
from .entrypoints.amqp import (
    FLEET_POSITIONS,
    PAYMENT_RESULTS,
    fleet_positions_handler,
    payment_results_handler,
)
from .entrypoints.http import routes
from .entrypoints.keys import FLEET, QUERIES, TICKETING
from .metrics import TicketingMetrics
from .service_layer.handlers import Ticketing
from .settings import Settings

__all__ = ["create_app"]


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(settings: Settings, telemetry: Telemetry) -> web.Application:
    app = web.Application(middlewares=[problem_middleware])
    metrics = TicketingMetrics(telemetry.registry)
    messaging = MessagingMetrics(telemetry.registry)

    async def database(app: web.Application) -> AsyncIterator[None]:
        pool = await database_pool(settings.database_url, min_size=2, max_size=settings.db_pool_max)
        assert pool is not None
        await apply_schema(pool)
        added = await seed_timetable(pool, settings.seed_days)
        logger.bind(trips_added=added).info("timetable seeded")
        app[POOL] = pool
        app[TICKETING] = Ticketing(
            lambda: PostgresUnitOfWork(pool),
            metrics,
            _now,
            timedelta(seconds=settings.hold_ttl_seconds),
        )
        app[QUERIES] = TripQueries(pool)
        app[FLEET] = FleetPositions(pool)
        pool_gauges = ConnectionPoolCollector(pool, pool_name="ticketing")
        telemetry.registry.register(pool_gauges)
        fleet = asyncio.create_task(
            repeat_forever(
                "active_buses",
                ActiveBuses(pool, metrics.active_buses).refresh,
                settings.queue_poll_seconds,
            )
        )
        pending = PendingOrders(pool, metrics.orders_pending, metrics.orders_pending_oldest_age)
        order_book = asyncio.create_task(
            repeat_forever("orders_pending", pending.refresh, settings.queue_poll_seconds)
        )
        yield
        await stop_task(order_book)
        await stop_task(fleet)
        telemetry.registry.unregister(pool_gauges)
        await pool.close()

    async def broker(app: web.Application) -> AsyncIterator[None]:
        async with running_messaging(
            amqp_url=settings.amqp_url,
            connection_name="safiri-ticketing",
            pool=app[POOL],
            queue=PAYMENT_RESULTS,
            handler=payment_results_handler(app[TICKETING]),
            metrics=messaging,
            prefetch=settings.prefetch,
            poll_interval=settings.queue_poll_seconds,
            also=[(FLEET_POSITIONS, fleet_positions_handler(app[FLEET], _now))],
        ) as connection:
            sweeper = asyncio.create_task(
                repeat_forever(
                    "release_expired_holds",
                    app[TICKETING].release_expired_holds,
                    settings.sweep_interval_seconds,
                )
            )
            app[CONNECTION] = connection
            yield
            await stop_task(sweeper)

    app.cleanup_ctx.extend([database, broker])

    async def database_ready() -> None:
        await app[POOL].fetchval("SELECT 1")

    async def broker_ready() -> None:
        broker_connected(app[CONNECTION])

    add_operations_routes(app, telemetry, {"database": database_ready, "broker": broker_ready})
    app.add_routes(routes)
    return app


POOL = web.AppKey("pool", asyncpg.Pool)
CONNECTION = web.AppKey("amqp_connection", AbstractRobustConnection)

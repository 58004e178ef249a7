"""The app factory: the broker connection, ticketing's client, and the two timers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from safiri_messaging import (
    broker_connected,
    connect,
    declare_events_exchange,
    publisher_channel,
    repeat_forever,
    sent_messages_counter,
    stop_task,
)
from safiri_telemetry import Telemetry
from safiri_web import add_operations_routes, problem_middleware

from .reporter import Reporter
from .settings import Settings

__all__ = ["CONNECTION", "REPORTER", "create_app"]

REPORTER = web.AppKey("reporter", Reporter)
CONNECTION = web.AppKey("amqp_connection", AbstractRobustConnection)


def create_app(settings: Settings, telemetry: Telemetry) -> web.Application:
    """The simulator as an aiohttp app: ``/healthz``, ``/readyz`` (the broker), ``/metrics``."""
    app = web.Application(middlewares=[problem_middleware])
    sent = sent_messages_counter(telemetry.registry)

    async def fleet(app: web.Application) -> AsyncIterator[None]:
        connection = await connect(settings.amqp_url, "safiri-fleet-simulator")
        try:
            exchange = await declare_events_exchange(await publisher_channel(connection))
            async with telemetry.client_session() as session:
                reporter = Reporter(session, settings.ticketing_url, exchange, sent)
                app[REPORTER] = reporter
                app[CONNECTION] = connection
                tasks = [
                    asyncio.create_task(
                        repeat_forever(
                            "fleet_trips", reporter.refresh_trips, settings.trips_refresh_seconds
                        )
                    ),
                    asyncio.create_task(
                        repeat_forever(
                            "fleet_fixes", reporter.report, settings.fix_interval_seconds
                        )
                    ),
                ]
                yield
                for task in tasks:
                    await stop_task(task)
        finally:
            await connection.close()

    app.cleanup_ctx.append(fleet)

    async def broker_ready() -> None:
        broker_connected(app[CONNECTION])

    add_operations_routes(app, telemetry, {"broker": broker_ready})
    return app

"""The one place that wires the gateway's real adapters: ticketing over HTTP, PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from safiri_flags import Flags
from safiri_telemetry import ConnectionPoolCollector, Telemetry
from safiri_web import add_operations_routes, database_pool, problem_middleware

from .adapters.active_users import active_users_context
from .adapters.idempotency_store import PostgresIdempotencyStore
from .adapters.maintenance import MAINTENANCE_FLAG, MaintenanceGauge
from .adapters.schema import apply_schema, ensure_database
from .adapters.ticketing import HttpTicketing
from .entrypoints.auth import require_api_key
from .entrypoints.http import MAX_BODY_BYTES, routes
from .entrypoints.keys import FLAGS, IDEMPOTENCY, PLACE_ORDER, TICKETING
from .entrypoints.operations_access import operations_access
from .entrypoints.rate_limit import rate_limit
from .service_layer.place_order import PlaceOrder
from .service_layer.ports import IdempotencyStore
from .settings import IDEMPOTENCY_LOCK_SECONDS, Settings

__all__ = ["create_app"]


def create_app(
    settings: Settings, telemetry: Telemetry, *, idempotency: IdempotencyStore | None = None
) -> web.Application:
    """The gateway application; ``idempotency`` replaces the PostgreSQL store (tests)."""
    app = web.Application(
        # add_operations_routes puts telemetry's middleware before these, so that even a 401
        # or a 413 is traced and carries X-Trace-Id.
        middlewares=[
            problem_middleware,
            operations_access(settings.metrics_allowed_networks),
            require_api_key(settings.api_keys),
            rate_limit(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
                telemetry.registry,
                settings.rate_limit_storage,
            ),
        ],
        client_max_size=MAX_BODY_BYTES,
    )

    async def ticketing(app: web.Application) -> AsyncIterator[None]:
        async with telemetry.client_session() as session:
            app[TICKETING] = HttpTicketing(
                session, settings.ticketing_url, settings.upstream_timeout
            )
            yield

    async def database(app: web.Application) -> AsyncIterator[None]:
        if idempotency is not None:
            app[IDEMPOTENCY] = idempotency
            yield
            return
        await ensure_database(settings.database_url)
        async with database_pool(settings.database_url, min_size=1, max_size=10) as pool:
            await apply_schema(pool)
            app[IDEMPOTENCY] = PostgresIdempotencyStore(pool, IDEMPOTENCY_LOCK_SECONDS)
            pool_gauges = ConnectionPoolCollector(pool, pool_name="gateway")
            telemetry.registry.register(pool_gauges)
            yield
            telemetry.registry.unregister(pool_gauges)

    async def flags(app: web.Application) -> AsyncIterator[None]:
        app[FLAGS] = Flags.start(
            settings.flags_file, service="gateway", registry=telemetry.registry
        )
        maintenance_gauge = MaintenanceGauge(app[FLAGS])
        telemetry.registry.register(maintenance_gauge)
        yield
        telemetry.registry.unregister(maintenance_gauge)
        app[FLAGS].shutdown()

    async def use_cases(app: web.Application) -> AsyncIterator[None]:
        flags = app[FLAGS]
        app[PLACE_ORDER] = PlaceOrder(
            app[IDEMPOTENCY],
            app[TICKETING],
            # Asked where a new order is placed, so the evaluation is on the POST's span.
            maintenance=lambda: flags.boolean(MAINTENANCE_FLAG, False),
            retry_after_seconds=settings.maintenance_retry_after_seconds,
        )
        yield
        # Answers still being stored for replay, before the database context closes the pool.
        await app[PLACE_ORDER].drain()

    # After the database context: the schema it applies has the sightings table.
    active_users = active_users_context(
        settings.database_url if idempotency is None else None,
        telemetry.registry,
        settings.api_keys,
    )
    app.cleanup_ctx.extend([flags, ticketing, database, active_users, use_cases])

    async def database_ready() -> None:
        await app[IDEMPOTENCY].check_alive()

    async def ticketing_ready() -> None:
        await app[TICKETING].check_alive()

    add_operations_routes(
        app, telemetry, {"database": database_ready, "ticketing": ticketing_ready}
    )
    app.add_routes(routes)
    return app

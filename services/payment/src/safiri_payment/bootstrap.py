"""The one place that wires payment's real adapters: PostgreSQL, RabbitMQ, Daraja."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import aiohttp
import asyncpg
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from safiri_flags import Flags
from safiri_messaging import (
    MessagingMetrics,
    SingleActive,
    broker_connected,
    running_messaging,
    stop_task,
)
from safiri_telemetry import ConnectionPoolCollector, Telemetry
from safiri_web import add_operations_routes, database_pool, problem_middleware

from .adapters.mpesa import DarajaClient
from .adapters.postgres import PostgresPaymentStore, PostgresUnitOfWork, apply_schema
from .entrypoints.amqp import PAYMENT_REQUESTS, payment_requests_handler
from .entrypoints.http import CALLBACK_PATH, routes
from .entrypoints.keys import FLAGS, PAYMENTS
from .metrics import PaymentMetrics
from .service_layer.canary import BASELINE
from .service_layer.canary import FLAG as PROVIDER_POLICY_FLAG
from .service_layer.handlers import Payments
from .service_layer.provider import PaymentProvider
from .service_layer.resilience import (
    CANARY_POLICY,
    CanaryArm,
    ResiliencePolicy,
    ResilientProvider,
)
from .service_layer.routing import BACKUP, MPESA, Routes
from .settings import Settings

__all__ = ["create_app"]

POOL = web.AppKey("pool", asyncpg.Pool)
# The flag that names the route of each new payment (deploy/flags/flags.json).
PAYMENT_PROVIDER_FLAG = "payment-provider"
CONNECTION = web.AppKey("amqp_connection", AbstractRobustConnection)


def canary_arm(client: DarajaClient, settings: Settings) -> CanaryArm:
    """The provider-policy canary's client (its shorter per-attempt timeout, never longer than
    the baseline's) and retry policy, beside the baseline's in each resilient provider."""
    timeout = min(CANARY_POLICY.attempt_timeout_seconds or 0.0, settings.provider_timeout_seconds)
    return client.with_timeout(timeout), CANARY_POLICY


def choose_variant(app: web.Application) -> Callable[[str, str | None], str]:
    """The provider-policy flag, asked per payment: the order as targeting key (each payment
    stays in one arm), the client (from the gateway's baggage) as the ``client`` attribute."""

    def choose(order_id: str, client: str | None) -> str:
        attributes = {"client": client} if client is not None else None
        return app[FLAGS].string(
            PROVIDER_POLICY_FLAG, BASELINE, targeting_key=order_id, attributes=attributes
        )

    return choose


def payment_routes(
    app: web.Application,
    settings: Settings,
    session: aiohttp.ClientSession,
    metrics: PaymentMetrics,
    mpesa: ResilientProvider,
    policy: ResiliencePolicy,
) -> Routes:
    """M-Pesa, and the backup when configured, each behind its own breaker; new payments go
    where the ``payment-provider`` flag says, asked per payment with the order as its key."""
    providers: dict[str, PaymentProvider] = {MPESA: mpesa}
    if (backup := settings.backup) is not None:
        client = DarajaClient(
            session,
            backup.url,
            backup.consumer_key.value,
            backup.consumer_secret.value,
            backup.shortcode,
            backup.passkey.value,
            settings.provider_timeout_seconds,
            name=BACKUP,
        )
        providers[BACKUP] = ResilientProvider(
            client, metrics, policy, canary=canary_arm(client, settings)
        )

    def flagged(order_id: str) -> str:
        return app[FLAGS].string(PAYMENT_PROVIDER_FLAG, MPESA, targeting_key=order_id)

    return Routes(providers, metrics, flagged)


def create_app(settings: Settings, telemetry: Telemetry) -> web.Application:
    app = web.Application(middlewares=[problem_middleware])
    metrics = PaymentMetrics(telemetry.registry)
    messaging = MessagingMetrics(telemetry.registry)

    def callback_url(payment_id: str, token: str) -> str:
        path = CALLBACK_PATH.format(payment_id=payment_id)
        return f"{settings.callback_base_url}{path}?token={token}"

    async def flags(app: web.Application) -> AsyncIterator[None]:
        app[FLAGS] = Flags.start(
            settings.flags_file, service="payment", registry=telemetry.registry
        )
        yield
        app[FLAGS].shutdown()

    async def database_and_provider(app: web.Application) -> AsyncIterator[None]:
        pool = await database_pool(settings.database_url, min_size=2, max_size=settings.db_pool_max)
        assert pool is not None
        await apply_schema(pool)
        session = telemetry.client_session()
        daraja = DarajaClient(
            session,
            settings.mpesa_url,
            settings.mpesa_consumer_key.value,
            settings.mpesa_consumer_secret.value,
            settings.mpesa_shortcode,
            settings.mpesa_passkey.value,
            settings.provider_timeout_seconds,
        )
        policy = ResiliencePolicy(
            breaker_threshold=settings.breaker_threshold,
            breaker_reset_seconds=settings.breaker_reset_seconds,
            attempts=settings.retry_attempts,
        )
        provider = ResilientProvider(daraja, metrics, policy, canary=canary_arm(daraja, settings))
        app[POOL] = pool
        app[PAYMENTS] = Payments(
            lambda: PostgresUnitOfWork(pool),
            payment_routes(app, settings, session, metrics, provider, policy),
            metrics,
            callback_url,
            store=PostgresPaymentStore(pool),
            abandon_after=timedelta(seconds=settings.abandon_after_seconds),
            choose_variant=choose_variant(app),
        )
        pool_gauges = ConnectionPoolCollector(pool, pool_name="payment")
        telemetry.registry.register(pool_gauges)
        overdue = timedelta(seconds=settings.reconcile_after_seconds)

        async def reconcile() -> None:
            await app[PAYMENTS].reconcile(overdue)

        # One replica at a time asks the provider about overdue payments (an advisory lock
        # elects it; another takes over within seconds when it dies).
        reconciler = asyncio.create_task(
            SingleActive(
                "reconcile_payments",
                settings.database_url,
                reconcile,
                settings.reconcile_interval_seconds,
                active=messaging.job_active,
            ).run()
        )
        yield
        await stop_task(reconciler)
        telemetry.registry.unregister(pool_gauges)
        await session.close()
        await pool.close()

    async def broker(app: web.Application) -> AsyncIterator[None]:
        async with running_messaging(
            amqp_url=settings.amqp_url,
            connection_name="safiri-payment",
            pool=app[POOL],
            queue=PAYMENT_REQUESTS,
            handler=payment_requests_handler(app[PAYMENTS]),
            metrics=messaging,
            prefetch=settings.prefetch,
            poll_interval=settings.queue_poll_seconds,
        ) as connection:
            app[CONNECTION] = connection
            yield

    app.cleanup_ctx.extend([flags, database_and_provider, broker])

    async def database_ready() -> None:
        await app[POOL].fetchval("SELECT 1")

    async def broker_ready() -> None:
        broker_connected(app[CONNECTION])

    add_operations_routes(app, telemetry, {"database": database_ready, "broker": broker_ready})
    app.add_routes(routes)
    return app

"""Ticketing's internal HTTP API, the real app on a real PostgreSQL and RabbitMQ: what it refuses
it refuses before anything is written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from safiri_telemetry import Telemetry, TelemetryConfig
from safiri_ticketing.bootstrap import create_app
from safiri_ticketing.settings import Settings
from tests.conftest import own_vhost
from tests.integration.test_ticketing_postgres import small_trip

pytestmark = pytest.mark.integration

PHONE = "254712345678"


@asynccontextmanager
async def running_ticketing(
    database_url: str, amqp_url: str
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    settings = Settings.from_env(
        {
            "SAFIRI_TICKETING_DATABASE_URL": database_url,
            "SAFIRI_AMQP_URL": amqp_url,
            "SAFIRI_SEED_DAYS": "0",
        }
    )
    config = TelemetryConfig.from_env("ticketing", "0.1.0", {"OTEL_SDK_DISABLED": "true"})
    telemetry = Telemetry(config, CollectorRegistry(), None)
    client = TestClient(TestServer(create_app(settings, telemetry), host="127.0.0.1"))
    await client.start_server()  # the schema is applied and the broker connected by now
    try:
        yield client
    finally:
        await client.close()


async def test_an_over_long_idempotency_key_is_refused_with_a_problem_and_no_order(
    make_database: Callable[[str], Awaitable[str]],
) -> None:
    database_url = await make_database("ticketing_http_key")
    with own_vhost(f"safiri-test-tkt-http-{uuid.uuid4().hex[:8]}") as amqp_url:
        async with running_ticketing(database_url, amqp_url) as client:
            conn = await asyncpg.connect(database_url)
            try:
                trip_id = await small_trip(conn, 4)
                body = {"trip_id": trip_id, "seat_count": 2, "phone": PHONE}

                refused = await client.post(
                    "/orders", json=body, headers={"Idempotency-Key": "k" * 201}
                )
                assert refused.status == 422
                assert refused.content_type == "application/problem+json"
                problem = await refused.json()
                assert problem["status"] == 422
                assert "Idempotency-Key" in problem["detail"]
                assert await conn.fetchval("SELECT count(*) FROM orders") == 0
                assert await conn.fetchval("SELECT count(*) FROM seat_allocations") == 0
                assert await conn.fetchval("SELECT count(*) FROM outbox") == 0

                # The same request with a key at the limit is taken: only the key was refused.
                longest = "k" * 200
                taken = await client.post(
                    "/orders", json=body, headers={"Idempotency-Key": longest}
                )
                assert taken.status == 201
                rows = await conn.fetch("SELECT trip_id::text, request_key FROM orders")
                assert [dict(r) for r in rows] == [{"trip_id": trip_id, "request_key": longest}]
            finally:
                await conn.close()

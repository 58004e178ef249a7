"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection

from safiri_messaging import connect


@pytest_asyncio.fixture
async def connection(
    amqp_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[AbstractRobustConnection]:
    """A connection to the run's vhost for the test, named for its module in the broker
    (test_outbox_lease: safiri-tests-outbox-lease)."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    conn = await connect(amqp_url, f"safiri-tests-{module.replace('_', '-')}")
    try:
        yield conn
    finally:
        await conn.close()

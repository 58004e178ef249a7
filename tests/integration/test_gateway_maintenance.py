"""Maintenance mode through the real gateway: its flag file edited, answers read over HTTP.

A real gateway (flagd's file provider on a file of the test's own, PostgreSQL for its keys) in
front of a fake ticketing: with ``maintenance-mode`` on, a new order is 503 problem+json of the
maintenance type with Retry-After, while searches, order reads and a retry of an order already
accepted are answered as before; the POST's server span carries the flag's evaluation; the
gauge on /metrics says it; off, orders are accepted again.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from safiri_chaos.flagfile import set_default_variant
from safiri_flags import DEFAULT_FLAGS_FILE
from tests.conftest import eventually

from .gateway_harness import (
    AUTH,
    FakeTicketing,
    Gateway,
    fake_ticketing,
    gateway_settings,
    order_body,
    order_headers,
    problem_of,
    running_gateway,
    span_exporter,
)

pytestmark = pytest.mark.integration

ORDERS = "/api/v1/orders"
REPO = Path(__file__).resolve().parents[2]
RETRY_AFTER = 37  # not the default: the answer must carry the setting


def set_maintenance(path: Path, on: bool) -> None:
    """Switch the flag the way an operator's edit does (the file replaced whole, a later mtime)."""
    set_default_variant(path, "maintenance-mode", "on" if on else "off")


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = span_exporter()
    yield exporter
    exporter.shutdown()


@pytest.fixture(scope="module")
def flag_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("flags") / "flags.json"
    shutil.copy(REPO / DEFAULT_FLAGS_FILE, path)
    return path


@pytest_asyncio.fixture(scope="module")
async def ticketing() -> AsyncIterator[FakeTicketing]:
    async with fake_ticketing() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module")
async def gateway(
    spans: InMemorySpanExporter,
    ticketing: FakeTicketing,
    flag_file: Path,
    make_database: Callable[[str], Awaitable[str]],
) -> AsyncIterator[Gateway]:
    settings = dataclasses.replace(
        gateway_settings(ticketing.url, await make_database("gateway_maintenance")),
        flags_file=str(flag_file),
        maintenance_retry_after_seconds=RETRY_AFTER,
    )
    async with running_gateway(settings) as gateway:
        yield gateway


async def gauge(gateway: Gateway) -> float:
    response = await gateway.client.get("/metrics")
    assert response.status == 200
    (value,) = [
        sample.value
        for family in text_string_to_metric_families(await response.text())
        for sample in family.samples
        if sample.name == "safiri_maintenance_mode"
    ]
    return value


async def place(gateway: Gateway, key: str | None = None) -> Any:
    return await gateway.client.post(ORDERS, json=order_body(), headers=order_headers(key))


async def switch(gateway: Gateway, flag_file: Path, on: bool) -> None:
    set_maintenance(flag_file, on)

    async def seen() -> bool:
        return await gauge(gateway) == (1.0 if on else 0.0)

    await eventually(seen, timeout=5.0, what=f"maintenance {'on' if on else 'off'} within 5 s")


@pytest_asyncio.fixture
async def maintenance_on(gateway: Gateway, flag_file: Path) -> AsyncIterator[None]:
    await switch(gateway, flag_file, True)
    yield
    await switch(gateway, flag_file, False)


async def test_a_new_order_in_maintenance_is_503_with_its_type_and_retry_after(
    gateway: Gateway, ticketing: FakeTicketing, maintenance_on: None
) -> None:
    before = len(ticketing.calls("/orders"))
    refused = await place(gateway)

    problem = await problem_of(refused, 503, "maintenance")
    assert problem["type"] == "https://safiri.dev/problems/maintenance"
    assert problem["title"] == "Down for maintenance"
    assert "maintenance" in problem["detail"]
    assert problem["instance"] == ORDERS
    assert refused.headers["Retry-After"] == str(RETRY_AFTER)
    assert len(ticketing.calls("/orders")) == before  # ticketing never asked


async def test_searches_and_order_reads_keep_working_in_maintenance(
    gateway: Gateway, flag_file: Path
) -> None:
    accepted = await place(gateway)
    assert accepted.status == 202, await accepted.text()
    order_id = (await accepted.json())["order_id"]
    await switch(gateway, flag_file, True)
    try:
        trips = await gateway.client.get(
            "/api/v1/trips", params={"date": "2026-03-01"}, headers=AUTH
        )
        order = await gateway.client.get(f"{ORDERS}/{order_id}", headers=AUTH)
        assert trips.status == 200, await trips.text()
        assert order.status == 200, await order.text()
        assert (await order.json())["order_id"] == order_id
        assert (await place(gateway)).status == 503  # while maintenance is indeed on
    finally:
        await switch(gateway, flag_file, False)


async def test_a_retry_of_an_order_accepted_before_maintenance_gets_its_stored_answer(
    gateway: Gateway, ticketing: FakeTicketing, flag_file: Path
) -> None:
    key = uuid.uuid4().hex
    accepted = await place(gateway, key)
    assert accepted.status == 202, await accepted.text()
    await switch(gateway, flag_file, True)
    try:
        calls = len(ticketing.calls("/orders"))
        retry = await place(gateway, key)
        assert retry.status == 202, await retry.text()
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert await retry.json() == await accepted.json()
        assert len(ticketing.calls("/orders")) == calls
    finally:
        await switch(gateway, flag_file, False)


async def test_the_refused_posts_key_goes_through_after_maintenance(
    gateway: Gateway, flag_file: Path
) -> None:
    key = uuid.uuid4().hex
    await switch(gateway, flag_file, True)
    try:
        await problem_of(await place(gateway, key), 503, "maintenance")
    finally:
        await switch(gateway, flag_file, False)
    after = await place(gateway, key)
    assert after.status == 202, await after.text()
    assert "Idempotent-Replayed" not in after.headers  # a new order, not the 503 replayed


async def test_the_posts_server_span_carries_the_flags_evaluation(
    gateway: Gateway, spans: InMemorySpanExporter, maintenance_on: None
) -> None:
    spans.clear()
    refused = await place(gateway)
    assert refused.status == 503
    trace_id = refused.headers["X-Trace-Id"]

    (server,) = [
        s
        for s in spans.get_finished_spans()
        if s.context is not None
        and format(s.context.trace_id, "032x") == trace_id
        and s.parent is None
    ]
    assert server.name == "POST /api/v1/orders"
    events = [e.attributes for e in server.events if e.name == "feature_flag.evaluation"]
    assert [(e or {}).get("feature_flag.key") for e in events] == ["maintenance-mode"]
    assert (events[0] or {}).get("feature_flag.result.variant") == "on"


async def test_orders_are_accepted_again_once_maintenance_is_off(
    gateway: Gateway, flag_file: Path
) -> None:
    await switch(gateway, flag_file, True)
    assert (await place(gateway)).status == 503
    set_maintenance(flag_file, False)

    async def accepted() -> bool:
        return (await place(gateway)).status == 202

    await eventually(accepted, timeout=5.0, what="202 again within 5 s of the flag off")

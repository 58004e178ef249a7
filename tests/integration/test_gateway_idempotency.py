"""Idempotency-Key semantics end to end, kept in a real PostgreSQL database.

A retry never places a second order; a reused key with another body, or a key whose first
request is still running, is refused; a failed upstream call frees the key for a retry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_gateway.adapters.idempotency_store import PostgresIdempotencyStore
from safiri_gateway.adapters.schema import apply_schema
from safiri_gateway.domain.idempotency import IdempotencyRecord, StoredResponse
from safiri_gateway.service_layer.ports import Claim

from .gateway_harness import (
    FULL_TRIP_ID,
    OTHER_API_KEY,
    UNKNOWN_TRIP_ID,
    FakeTicketing,
    Gateway,
    assert_traced,
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


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = span_exporter()
    yield exporter
    exporter.shutdown()


@pytest_asyncio.fixture(scope="module")
async def ticketing() -> AsyncIterator[FakeTicketing]:
    async with fake_ticketing() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module")
async def database_url(make_database: Callable[[str], Awaitable[str]]) -> str:
    return await make_database("gateway_idempotency")


@pytest_asyncio.fixture(scope="module")
async def gateway(
    spans: InMemorySpanExporter, ticketing: FakeTicketing, database_url: str
) -> AsyncIterator[Gateway]:
    async with running_gateway(gateway_settings(ticketing.url, database_url)) as gateway:
        yield gateway


@pytest_asyncio.fixture(scope="module")
async def pool(database_url: str, gateway: Gateway) -> AsyncIterator[asyncpg.Pool[Any]]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=12) as pool:
        yield pool


@pytest.fixture(autouse=True)
def fresh_ticketing(ticketing: FakeTicketing) -> Iterator[None]:
    ticketing.reset()
    yield
    ticketing.release()


async def place(gateway: Gateway, key: str, **body: Any) -> Any:
    return await gateway.client.post(ORDERS, json=order_body(**body), headers=order_headers(key))


async def test_a_retry_gets_the_same_order_and_places_nothing_new(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    key = uuid.uuid4().hex
    first = await place(gateway, key)
    retry = await place(gateway, key)

    assert (first.status, retry.status) == (202, 202)
    assert await retry.json() == await first.json()
    assert retry.headers["Location"] == first.headers["Location"]
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert_traced(retry)
    assert len(ticketing.calls("/orders")) == 1


async def test_the_same_order_spelled_differently_is_a_retry(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    key = uuid.uuid4().hex
    first = await place(gateway, key, phone="254712345678")
    retry = await place(gateway, key, phone="+254712345678")

    assert retry.headers["Idempotent-Replayed"] == "true"
    assert (await retry.json())["order_id"] == (await first.json())["order_id"]
    assert len(ticketing.calls("/orders")) == 1


async def test_a_used_key_with_another_body_is_422(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    key = uuid.uuid4().hex
    await place(gateway, key, seat_count=2)
    reused = await place(gateway, key, seat_count=3)

    await problem_of(reused, 422, "idempotency-key-reused")
    assert len(ticketing.calls("/orders")) == 1


async def test_keys_belong_to_one_client(gateway: Gateway, ticketing: FakeTicketing) -> None:
    key = uuid.uuid4().hex
    mine = await place(gateway, key)
    theirs = await gateway.client.post(
        ORDERS,
        json=order_body(),
        headers={"Authorization": f"Bearer {OTHER_API_KEY}", "Idempotency-Key": key},
    )

    assert theirs.status == 202
    assert "Idempotent-Replayed" not in theirs.headers
    assert (await theirs.json())["order_id"] != (await mine.json())["order_id"]
    assert len(ticketing.calls("/orders")) == 2


async def test_a_key_whose_first_request_is_in_flight_is_409(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    key = uuid.uuid4().hex
    ticketing.hold = asyncio.Event()
    first = asyncio.create_task(place(gateway, key))
    await asyncio.wait_for(ticketing.holding.wait(), timeout=10)

    concurrent = await place(gateway, key)
    other_body = await place(gateway, key, seat_count=5)
    ticketing.release()
    accepted = await first
    retry = await place(gateway, key)

    await problem_of(concurrent, 409, "idempotency-key-in-flight")
    await problem_of(other_body, 422, "idempotency-key-reused")
    assert accepted.status == 202
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert (await retry.json())["order_id"] == (await accepted.json())["order_id"]
    assert len(ticketing.calls("/orders")) == 1


async def test_a_ticketing_failure_frees_the_key(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    key = uuid.uuid4().hex
    ticketing.failures = 1
    failed = await place(gateway, key)
    retry = await place(gateway, key)

    await problem_of(failed, 503, "upstream-unavailable")
    assert retry.status == 202
    assert "Idempotent-Replayed" not in retry.headers
    assert len(ticketing.calls("/orders")) == 2


async def test_a_ticketing_timeout_is_504_and_frees_the_key(
    ticketing: FakeTicketing, database_url: str
) -> None:
    key = uuid.uuid4().hex
    settings = gateway_settings(ticketing.url, database_url, upstream_timeout=0.3)
    async with running_gateway(settings) as gateway:
        ticketing.hold = asyncio.Event()
        timed_out = await place(gateway, key)
        ticketing.release()
        ticketing.hold = None
        retry = await place(gateway, key)

        await problem_of(timed_out, 504, "upstream-timeout")
        assert retry.status == 202
        assert "Idempotent-Replayed" not in retry.headers


async def test_a_final_refusal_is_replayed_under_the_new_trace(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    key = uuid.uuid4().hex
    first = await place(gateway, key, trip_id=UNKNOWN_TRIP_ID)
    retry = await place(gateway, key, trip_id=UNKNOWN_TRIP_ID)

    original = await problem_of(first, 422, "unknown-trip")
    replayed = await problem_of(retry, 422, "unknown-trip")
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert replayed["trace_id"] != original["trace_id"]
    assert {k: v for k, v in replayed.items() if k != "trace_id"} == {
        k: v for k, v in original.items() if k != "trace_id"
    }
    assert len(ticketing.calls("/orders")) == 1


async def test_seats_taken_right_now_free_the_key(
    gateway: Gateway, ticketing: FakeTicketing
) -> None:
    key = uuid.uuid4().hex
    await problem_of(await place(gateway, key, trip_id=FULL_TRIP_ID), 409, "seats-unavailable")
    await problem_of(await place(gateway, key, trip_id=FULL_TRIP_ID), 409, "seats-unavailable")

    assert len(ticketing.calls("/orders")) == 2


async def test_a_replay_survives_a_gateway_restart(
    gateway: Gateway, ticketing: FakeTicketing, database_url: str
) -> None:
    key = uuid.uuid4().hex
    first = await place(gateway, key)
    async with running_gateway(gateway_settings(ticketing.url, database_url)) as restarted:
        retry = await place(restarted, key)
        replayed = await retry.json()

    assert retry.headers["Idempotent-Replayed"] == "true"
    assert replayed["order_id"] == (await first.json())["order_id"]


async def test_the_replay_is_marked_on_the_idempotency_span(
    gateway: Gateway, spans: InMemorySpanExporter
) -> None:
    key = uuid.uuid4().hex
    first = await place(gateway, key)
    retry = await place(gateway, key)

    def claim_span(trace_id: str) -> dict[str, Any]:
        (span,) = [
            s
            for s in spans.get_finished_spans()
            if s.name == "claim_idempotency_key"
            and s.context is not None
            and s.context.trace_id == int(trace_id, 16)
        ]
        return dict(span.attributes or {})

    replayed = claim_span(retry.headers["X-Trace-Id"])
    assert claim_span(first.headers["X-Trace-Id"])["safiri.idempotency.replayed"] is False
    assert replayed["safiri.idempotency.replayed"] is True
    assert replayed["safiri.idempotency.original_trace_id"] == first.headers["X-Trace-Id"]


# --- the store on its own ---------------------------------------------------------------------


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(
    pool: asyncpg.Pool[Any],
) -> None:
    store = PostgresIdempotencyStore(pool)
    key = uuid.uuid4().hex

    results = await asyncio.gather(*(store.claim("c", key, "fp", None) for _ in range(10)))

    assert sum(isinstance(r, Claim) for r in results) == 1
    assert all(r == IdempotencyRecord("fp", None) for r in results if not isinstance(r, Claim))


async def test_a_stale_claim_is_taken_over_and_its_late_answer_ignored(
    pool: asyncpg.Pool[Any],
) -> None:
    store = PostgresIdempotencyStore(pool, lock_seconds=0.0)
    key = uuid.uuid4().hex
    stale = await store.claim("c", key, "fp", None)
    other_body = await store.claim("c", key, "other-fp", None)
    taken = await store.claim("c", key, "fp", None)
    assert isinstance(stale, Claim)
    assert isinstance(taken, Claim)
    assert taken.owner != stale.owner
    assert other_body == IdempotencyRecord("fp", None)

    await store.complete(taken, StoredResponse(202, {"order_id": "new"}))
    await store.complete(stale, StoredResponse(202, {"order_id": "old"}))
    await store.release(stale)

    replay = await store.claim("c", key, "fp", None)
    assert replay == IdempotencyRecord("fp", StoredResponse(202, {"order_id": "new"}))


async def test_the_schema_can_be_applied_again_and_concurrently(
    pool: asyncpg.Pool[Any],
) -> None:
    await asyncio.gather(apply_schema(pool), apply_schema(pool), apply_schema(pool))

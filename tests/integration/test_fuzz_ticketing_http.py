"""Ticketing's internal HTTP API fuzzed from its own request models, the real app on a real
PostgreSQL and RabbitMQ: every malformed request is a 4xx problem+json, none a 5xx, and the
service's own 5xx series does not move."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import strategies as st
from schemathesis import Case, Response

from safiri_ticketing.entrypoints.requests import (
    IdempotencyKey,
    PlaceOrder,
    TripSearch,
    TripsUnderWay,
)
from tests.conftest import own_vhost
from tests.integration.http_fuzz import (
    Operation,
    fuzz,
    openapi_document,
    problem_json_fault,
    send_raw,
    server_errors,
)
from tests.integration.test_ticketing_http import PHONE, running_ticketing
from tests.integration.test_ticketing_postgres import small_trip

pytestmark = pytest.mark.integration

TICKETING_API = openapi_document(
    "Safiri ticketing (internal)",
    [
        Operation("GET", "/trips", query=TripSearch),
        Operation("GET", "/fleet/trips-under-way", query=TripsUnderWay),
        Operation("POST", "/orders", body=PlaceOrder, headers=IdempotencyKey),
        Operation(
            "GET",
            "/orders/{order_id}",
            path_params={"order_id": {"type": "string", "format": "uuid"}},
        ),
    ],
)


@dataclass
class Ticketing:
    client: TestClient[web.Request, web.Application]
    base_url: str
    trip_id: str

    async def server_errors(self) -> float:
        async with self.client.get("/metrics") as response:
            return server_errors(await response.text())


@pytest_asyncio.fixture(scope="module")
async def ticketing(
    make_database: Callable[[str], Awaitable[str]],
) -> AsyncIterator[Ticketing]:
    database_url = await make_database(f"ticketing_fuzz_{uuid.uuid4().hex[:6]}")
    with own_vhost(f"safiri-test-tkt-fuzz-{uuid.uuid4().hex[:8]}") as amqp_url:
        async with running_ticketing(database_url, amqp_url) as client:
            conn = await asyncpg.connect(database_url)
            try:
                trip_id = await small_trip(conn, 40)
            finally:
                await conn.close()
            yield Ticketing(client, str(client.make_url("")).rstrip("/"), trip_id)


def _answer_fault(case: Case[Any], response: Response) -> str | None:
    content_type = (response.headers.get("content-type") or [""])[0]
    return problem_json_fault(response.status_code, content_type, response.content)


async def test_no_generated_request_gets_a_server_error_or_a_bare_4xx(
    ticketing: Ticketing,
) -> None:
    def on_the_real_trip(case: Case[Any], data: st.DataObject) -> None:
        # A random UUID names no trip: half the bodies name the one on sale, so the requests
        # that pass validation also reach the seat map and the database.
        body = case.body
        if isinstance(body, dict) and "trip_id" in body and data.draw(st.booleans()):
            body["trip_id"] = ticketing.trip_id

    statuses: list[int] = []

    def check(case: Case[Any], response: Response) -> str | None:
        statuses.append(response.status_code)
        return _answer_fault(case, response)

    before = await ticketing.server_errors()
    sent, faults = await fuzz(
        TICKETING_API,
        ticketing.base_url,
        examples=300,
        check=check,
        prepare=on_the_real_trip,
    )
    assert faults == []
    assert sent >= 300
    assert 201 in statuses  # orders were placed: valid requests reached the database
    assert await ticketing.server_errors() == before


def _order(**changes: object) -> bytes:
    return json.dumps({"trip_id": "T", "seat_count": 1, "phone": PHONE} | changes).encode()


# Requests no schema describes: bytes that are not JSON, nesting deeper than a parser's stack,
# non-finite and huge numbers, text PostgreSQL cannot store, undecodable header bytes. Each is
# refused (a 4xx problem) or, where it means something after all, served; never a 5xx.
POST = b"POST /orders HTTP/1.1"
REFUSED, SERVED = True, False
RAW = [
    pytest.param(POST, b"{not json", REFUSED, id="not-json"),
    pytest.param(POST, b"\xff\xfe\x00", REFUSED, id="not-utf8"),
    pytest.param(POST, b"[" * 100_000, REFUSED, id="deep-nesting"),
    pytest.param(POST, b'{"a": ' * 5000, REFUSED, id="deep-object"),
    pytest.param(POST, _order(seat_count=float("nan")), REFUSED, id="nan"),
    pytest.param(POST, _order(seat_count=10**400), REFUSED, id="huge-int"),
    pytest.param(POST, _order(seat_count=True), REFUSED, id="bool-count"),
    pytest.param(POST, _order(phone="\u0662" * 12), REFUSED, id="arabic-digits"),
    pytest.param(POST, _order(phone="012345678901"), REFUSED, id="leading-zero-phone"),
    pytest.param(POST, _order(trip_id=None), REFUSED, id="null-trip"),
    pytest.param(POST, b"{" + b" " * 3_000_000 + b"}", REFUSED, id="oversize"),
    pytest.param(POST + b"\r\nIdempotency-Key: \xed\xa0\x80", _order(), REFUSED, id="bad-key"),
    pytest.param(POST + b"\r\nContent-Type: text/x; charset=nope", _order(), SERVED, id="charset"),
    pytest.param(b"GET /trips?date=2026-01-01&origin=%00 HTTP/1.1", b"", REFUSED, id="nul-origin"),
    pytest.param(b"GET /trips?date=2026-13-01 HTTP/1.1", b"", REFUSED, id="no-such-day"),
    pytest.param(
        b"GET /trips?date=2026-01-01&origin=%ED%A0%80 HTTP/1.1", b"", SERVED, id="bad-utf8"
    ),
    pytest.param(b"GET /trips?date=9999-12-31 HTTP/1.1", b"", SERVED, id="last-day"),
    pytest.param(b"GET /orders/%00 HTTP/1.1", b"", REFUSED, id="nul-order-id"),
    pytest.param(b"GET /fleet/trips-under-way?at=yesterday HTTP/1.1", b"", REFUSED, id="bad-at"),
    pytest.param(
        b"GET /fleet/trips-under-way?at=2026-12-07T08:00:00 HTTP/1.1", b"", REFUSED, id="naive-at"
    ),
    pytest.param(
        b"GET /fleet/trips-under-way?at=2026-12-07T08:00:00%2B03:00 HTTP/1.1",
        b"",
        SERVED,
        id="at-with-offset",
    ),
]


@pytest.mark.parametrize(("head", "body", "refused"), RAW)
async def test_a_malformed_request_is_refused_with_a_problem_or_served_never_a_5xx(
    ticketing: Ticketing, head: bytes, body: bytes, refused: bool
) -> None:
    body = body.replace(b'"T"', json.dumps(ticketing.trip_id).encode())
    before = await ticketing.server_errors()
    answer = await send_raw(ticketing.base_url, head, body)
    assert problem_json_fault(answer.status, answer.content_type, answer.body) is None
    assert (400 <= answer.status < 500) is refused, answer
    assert await ticketing.server_errors() == before

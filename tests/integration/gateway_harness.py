"""What the gateway's integration tests share: a fake ticketing on a loopback port, a running
gateway in front of it, and the span exporter that sees both."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_gateway import Settings, create_app
from safiri_telemetry import Telemetry
from safiri_web import Secret
from tests.conftest import serving

API_KEY = "gw-test-key-0123456789"
OTHER_API_KEY = "gw-other-key-9876543210"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
TRIP_ID = "7d5b7e1c-3a57-4f2b-9a64-0f8f3a1e2b01"
UNKNOWN_TRIP_ID = "00000000-0000-4000-8000-000000000000"
FULL_TRIP_ID = "11111111-1111-4111-8111-111111111111"
PHONE = "254712345678"
PROBLEM = "application/problem+json"

TRIP = {
    "trip_id": TRIP_ID,
    "origin": "Nairobi",
    "destination": "Mombasa",
    "departs_at": "2026-03-01T08:00:00+03:00",
    "arrives_at": "2026-03-01T16:00:00+03:00",
    "bus_id": "KBZ 123A",
    "fare": {"amount": 1500, "currency": "KES"},
    "seats_total": 40,
    "seats_available": 38,
}
# What ticketing's internal API may say on top of the public shape: never passed to clients.
INTERNAL = {"depot": "Machakos", "seat_map_version": 7}


def span_exporter() -> InMemorySpanExporter:
    """An exporter on the process-wide SDK provider, installing that provider only once.

    The telemetry middleware traces through the global provider; without an SDK one its spans
    are not recording and responses would carry no X-Trace-Id.
    """
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _problem(request: web.Request, status: int, kind: str, title: str) -> web.Response:
    traceparent = request.headers.get("traceparent", "00-" + "0" * 32 + "-")
    body = {
        "type": f"https://safiri.dev/problems/{kind}",
        "title": title,
        "status": status,
        "detail": f"{title} (from fake ticketing)",
        "instance": request.path,
        "trace_id": traceparent.split("-")[1],
    }
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM)


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeTicketing:
    """Ticketing's internal API as the gateway sees it, with switchable failures."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: int = 0  # answer this many order requests with 500
    hold: asyncio.Event | None = None  # order requests wait for this event
    holding: asyncio.Event = field(default_factory=asyncio.Event)

    def reset(self) -> None:
        self.received.clear()
        self.failures = 0
        self.release()
        self.hold = None
        self.holding = asyncio.Event()

    def release(self) -> None:
        if self.hold is not None:
            self.hold.set()

    def calls(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/trips", self._trips)
        app.router.add_post("/orders", self._place)
        app.router.add_get("/orders/{order_id}", self._order)
        return app

    async def _record(self, request: web.Request) -> None:
        body = await request.json() if request.can_read_body else None
        self.received.append(
            Received(request.method, request.path, dict(request.query), dict(request.headers), body)
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _trips(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"trips": [{**TRIP, **INTERNAL}]})

    async def _place(self, request: web.Request) -> web.Response:
        await self._record(request)
        body = self.received[-1].body
        if self.hold is not None:
            self.holding.set()
            await self.hold.wait()
        if self.failures > 0:
            self.failures -= 1
            return web.Response(status=500, text="Traceback (most recent call last): boom")
        if body["trip_id"] == UNKNOWN_TRIP_ID:
            return _problem(request, 422, "unknown-trip", "Unknown trip")
        if body["trip_id"] == FULL_TRIP_ID:
            return _problem(request, 409, "seats-unavailable", "Not enough free seats")
        order_id = str(uuid.uuid4())
        order = {
            "order_id": order_id,
            "status": "PENDING_PAYMENT",
            "seats": list(range(1, body["seat_count"] + 1)),
            "amount": {"amount": 1500 * body["seat_count"], "currency": "KES"},
            "expires_at": "2026-03-01T07:50:00+03:00",
            "trip_id": body["trip_id"],
            "seat_count": body["seat_count"],
            "created_at": "2026-03-01T07:40:00+03:00",
        }
        self.orders[order_id] = order
        return web.json_response({**order, **INTERNAL}, status=201)

    async def _order(self, request: web.Request) -> web.Response:
        await self._record(request)
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return _problem(request, 404, "order-not-found", "Order not found")
        return web.json_response({**order, **INTERNAL})


@asynccontextmanager
async def fake_ticketing() -> AsyncIterator[FakeTicketing]:
    fake = FakeTicketing()
    async with serving(fake.app()) as url:
        fake.url = url
        try:
            yield fake
        finally:
            fake.release()


@dataclass
class Gateway:
    client: TestClient[web.Request, web.Application]
    logs: io.StringIO


def gateway_settings(
    ticketing_url: str, database_url: str, *, upstream_timeout: float = 5.0
) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        ticketing_url=ticketing_url,
        database_url=database_url,
        api_keys=(Secret(API_KEY), Secret(OTHER_API_KEY)),
        upstream_timeout=upstream_timeout,
    )


# One stream for every gateway a test starts: each Telemetry.setup moves the log sink to its
# own stream, which would leave a longer-lived gateway logging somewhere no test looks.
LOGS = io.StringIO()


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[Gateway]:
    logs = LOGS
    telemetry = Telemetry.setup(
        "gateway",
        env={},
        install_global=False,
        log_stream=logs,
        span_processor=SimpleSpanProcessor(InMemorySpanExporter()),
    )
    client = TestClient(TestServer(create_app(settings, telemetry), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Gateway(client, logs)
    finally:
        await client.close()


def order_body(trip_id: str = TRIP_ID, seat_count: int = 2, phone: str = PHONE) -> dict[str, Any]:
    return {"trip_id": trip_id, "seat_count": seat_count, "phone": phone}


def order_headers(key: str | None = None) -> dict[str, str]:
    return {**AUTH, "Idempotency-Key": key or uuid.uuid4().hex}


async def problem_of(response: aiohttp.ClientResponse, status: int, kind: str) -> dict[str, Any]:
    """The problem document, after checking it is the expected one and carries the trace."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == PROBLEM, text
    document: dict[str, Any] = json.loads(text)
    assert document["type"].endswith(f"/{kind}"), document
    assert document["status"] == status
    assert document["trace_id"] == response.headers["X-Trace-Id"], document
    assert "Traceback" not in text
    return document


def assert_traced(response: aiohttp.ClientResponse) -> None:
    trace_id = response.headers["X-Trace-Id"]
    version, tp_trace, span_id, flags = response.headers["traceparent"].split("-")
    assert len(trace_id) == 32
    assert int(trace_id, 16) != 0
    assert (version, tp_trace) == ("00", trace_id)
    assert len(span_id) == 16
    assert len(flags) == 2

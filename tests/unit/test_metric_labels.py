"""Label cardinality guard: whatever paths and ids clients send, label values stay bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from safiri_telemetry import Telemetry
from safiri_web import problem_middleware

pytestmark = pytest.mark.unit

ROUTES = {"/api/v1/orders/{order_id}", "/api/v1/trips", "unmatched"}
METHODS = {"GET", "POST", "PUT", "DELETE"}
STATUSES = {"200", "404", "405", "500"}

segment = st.text(
    alphabet=st.characters(codec="ascii", categories=("L", "N"), include_characters="-_."),
    min_size=1,
    max_size=24,
)
paths = st.one_of(
    st.builds(lambda s: f"/api/v1/orders/{s}", segment),
    st.just("/api/v1/trips"),
    st.lists(segment, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
)


class Served:
    def __init__(self) -> None:
        self.telemetry = Telemetry.setup("labels", install_global=False)
        app = web.Application(middlewares=[self.telemetry.middleware, problem_middleware])

        async def order(request: web.Request) -> web.Response:
            if request.match_info["order_id"].startswith("0"):
                raise RuntimeError("boom")
            return web.json_response({})

        async def trips(request: web.Request) -> web.Response:
            return web.json_response({})

        app.router.add_get("/api/v1/orders/{order_id}", order)
        app.router.add_get("/api/v1/trips", trips)
        self.app = app


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Served, str, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    served = Served()
    runner = web.AppRunner(served.app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    try:
        yield served, f"http://127.0.0.1:{runner.addresses[0][1]}", loop
    finally:
        loop.run_until_complete(runner.cleanup())
        loop.close()


def label_values(registry: CollectorRegistry) -> Iterator[dict[str, str]]:
    for family in registry.collect():
        for sample in family.samples:
            yield sample.labels


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(method=st.sampled_from(sorted(METHODS)), path=paths)
def test_every_label_value_comes_from_a_bounded_set(
    served: tuple[Served, str, asyncio.AbstractEventLoop], method: str, path: str
) -> None:
    app, base, loop = served

    async def call() -> None:
        async with aiohttp.ClientSession() as http, http.request(method, base + path) as r:
            await r.read()

    loop.run_until_complete(call())
    for labels in label_values(app.telemetry.registry):
        assert labels.get("http_route", "unmatched") in ROUTES, labels
        assert labels.get("http_request_method", "GET") in METHODS, labels
        assert labels.get("http_response_status_code", "200") in STATUSES, labels

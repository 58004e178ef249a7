"""OpenTelemetry's HTTP conventions for a server span's status: a 4xx answer is the client's
mistake (status left unset), only a 5xx is the server's error. They hold however the handler
answers: a response returned or an ``HTTPException`` raised, with no problem middleware
between the handler and the telemetry middleware to turn the exception into a response."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from safiri_telemetry import Telemetry
from tests.conftest import serving

pytestmark = pytest.mark.unit

RAISED: dict[int, type[web.HTTPException]] = {
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    422: web.HTTPUnprocessableEntity,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}


@pytest_asyncio.fixture
async def bare() -> AsyncIterator[str]:
    telemetry = Telemetry.setup("unit-status", install_global=False, log_stream=io.StringIO())
    app = web.Application(middlewares=[telemetry.middleware])

    async def answer(request: web.Request) -> web.Response:
        status = int(request.match_info["status"])
        if request.query.get("how") == "raise":
            raise RAISED[status]()
        return web.Response(status=status)

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app.router.add_get("/answer/{status}", answer)
    app.router.add_get("/crash", crash)
    async with serving(app) as url:
        yield url


async def server_span(spans: InMemorySpanExporter, url: str) -> tuple[int, ReadableSpan]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        status = response.status
    (span,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    spans.clear()
    return status, span


@pytest.mark.parametrize("how", ["return", "raise"])
@pytest.mark.parametrize("code", [404, 409, 422])
async def test_a_4xx_answer_leaves_the_server_span_unset(
    bare: str, spans: InMemorySpanExporter, how: str, code: int
) -> None:
    status, span = await server_span(spans, f"{bare}/answer/{code}?how={how}")
    assert status == code
    assert span.attributes is not None and span.attributes["http.response.status_code"] == code
    assert span.status.status_code is StatusCode.UNSET, span.status
    assert not [e for e in span.events if e.name == "exception"]


@pytest.mark.parametrize("how", ["return", "raise"])
@pytest.mark.parametrize("code", [500, 503])
async def test_a_5xx_answer_is_an_error_server_span(
    bare: str, spans: InMemorySpanExporter, how: str, code: int
) -> None:
    status, span = await server_span(spans, f"{bare}/answer/{code}?how={how}")
    assert status == code
    assert span.status.status_code is StatusCode.ERROR


async def test_an_unknown_path_is_a_404_with_an_unset_server_span(
    bare: str, spans: InMemorySpanExporter
) -> None:
    status, span = await server_span(spans, f"{bare}/no/such/path")
    assert status == 404
    assert span.status.status_code is StatusCode.UNSET, span.status


async def test_an_unhandled_exception_is_an_error_server_span_with_the_exception(
    bare: str, spans: InMemorySpanExporter
) -> None:
    status, span = await server_span(spans, f"{bare}/crash")
    assert status == 500
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "RuntimeError: a bug"
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None and event.attributes["exception.type"] == "RuntimeError"

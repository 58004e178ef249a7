"""libs/telemetry's redaction and HTTP helpers, exactly: what `make mutation` showed the first
tests let pass.

A ``traceparent`` written in decimal or upper case, a header stamped from no trace at all, an
exemplar pointing at a trace that was never sampled, a latency measured from the wrong end, a
``/metrics`` that fails a scraper sending no ``Accept``, a client session that drops its caller's
options, an escaping error counted under the wrong status and a secret key pattern missing
``password`` all passed tests/unit/test_telemetry*.py. Each test here kills such mutants
(docs/mutation.md lists them, and the ones left alive with the reason).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from safiri_telemetry import Telemetry, redact_mapping
from safiri_telemetry._aiohttp import _exemplar, _stamp
from safiri_telemetry._metrics import LATENCY_BUCKETS
from safiri_telemetry._redaction import redact_value
from tests.conftest import serving

pytestmark = pytest.mark.unit


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[str, Telemetry]]:
    telemetry = Telemetry.setup("mutation-svc", install_global=False)
    app = web.Application(middlewares=[telemetry.middleware])

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({})

    async def slow(request: web.Request) -> web.Response:
        # Long enough that a duration off by 0.1 % shows at a hundredth of a millisecond.
        await asyncio.sleep(0.05)
        return web.json_response({})

    app.router.add_get("/hello", hello)
    app.router.add_get("/slow", slow)
    app.router.add_get("/metrics", telemetry.metrics_handler)
    async with serving(app) as base:
        yield base, telemetry


async def test_the_response_carries_its_server_span_as_a_w3c_traceparent(
    served: tuple[str, Telemetry], spans: InMemorySpanExporter
) -> None:
    base, _ = served
    async with aiohttp.ClientSession() as http, http.get(f"{base}/hello") as response:
        headers = response.headers
    [server] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    trace_id = f"{server.context.trace_id:032x}"
    flags = server.context.trace_flags
    assert flags.sampled
    assert headers["traceparent"] == f"00-{trace_id}-{server.context.span_id:016x}-{flags:02x}"
    assert headers["X-Trace-Id"] == trace_id
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "safiri.aiohttp.server"


def test_no_trace_headers_are_stamped_without_a_trace() -> None:
    response = web.Response()
    _stamp(response, trace.INVALID_SPAN)
    assert "traceparent" not in response.headers
    assert "X-Trace-Id" not in response.headers


def test_an_exemplar_points_only_at_a_sampled_trace() -> None:
    def span(flags: int) -> NonRecordingSpan:
        return NonRecordingSpan(
            SpanContext(0xAB, 0xCD, is_remote=False, trace_flags=TraceFlags(flags))
        )

    with trace.use_span(span(TraceFlags.DEFAULT)):
        assert _exemplar() is None
    with trace.use_span(span(TraceFlags.SAMPLED)):
        assert _exemplar() == {"trace_id": f"{0xAB:032x}"}


async def test_the_server_span_is_the_routes_child_of_the_callers_context_with_its_attributes(
    served: tuple[str, Telemetry], spans: InMemorySpanExporter
) -> None:
    """Named after the route's template, a SERVER span, the child of the caller's
    ``traceparent``, carrying exactly the request's attributes and the answer's status."""
    base, _ = served
    trace_id, parent_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
    headers = {
        "traceparent": f"00-{trace_id:032x}-{parent_id:016x}-01",
        "User-Agent": "probe/1.0",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/hello?page=2", headers=headers) as response,
    ):
        assert response.status == 200
    [server] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.name == "GET /hello"
    assert server.context.trace_id == trace_id
    assert server.parent is not None and server.parent.span_id == parent_id
    assert server.parent.is_remote
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/hello",
        "url.path": "/hello",
        "url.scheme": "http",
        "server.address": "127.0.0.1",
        "user_agent.original": "probe/1.0",
        "http.response.status_code": 200,
    }
    assert server.status.status_code is trace.StatusCode.UNSET
    assert not server.events


async def test_a_request_without_a_user_agent_records_an_empty_one(
    served: tuple[str, Telemetry], spans: InMemorySpanExporter
) -> None:
    base, _ = served
    async with (
        aiohttp.ClientSession(skip_auto_headers=["User-Agent"]) as http,
        http.get(f"{base}/hello") as response,
    ):
        assert response.status == 200
    [server] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert server.attributes is not None
    assert server.attributes["user_agent.original"] == ""


async def test_every_request_but_a_scrape_is_one_access_log_line_with_its_fields(
    served: tuple[str, Telemetry],
) -> None:
    base, telemetry = served
    lines: list[dict[str, Any]] = []
    sink = logger.add(
        lambda m: lines.append(
            {**m.record["extra"], "message": m.record["message"], "level": m.record["level"].name}
        ),
        level="DEBUG",
    )
    try:
        async with aiohttp.ClientSession() as http:
            took = time.perf_counter()
            async with http.get(f"{base}/slow") as response:
                assert response.status == 200
            took = time.perf_counter() - took
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
            async with http.get(f"{base}/nowhere") as response:
                assert response.status == 404
    finally:
        logger.remove(sink)
    handled = [line for line in lines if line["message"] == "request handled"]
    assert [(line["http_route"], line["http_status"]) for line in handled] == [
        ("/slow", 200),
        ("unmatched", 404),
    ], handled
    slow = handled[0]
    assert slow["level"] == "INFO"
    assert slow["http_method"] == "GET"
    assert 50 <= slow["duration_ms"] <= took * 1000
    # The same measurement as the histogram's, in milliseconds to two places.
    observed = telemetry.registry.get_sample_value(
        "http_server_request_duration_seconds_sum",
        {"http_request_method": "GET", "http_route": "/slow", "http_response_status_code": "200"},
    )
    assert observed is not None
    assert slow["duration_ms"] == round(observed * 1000, 2)


async def test_both_http_histograms_have_the_latency_buckets(
    served: tuple[str, Telemetry],
) -> None:
    """Fine around POST /orders' 50 ms target (LATENCY_BUCKETS), not the client's defaults."""
    base, telemetry = served
    async with telemetry.client_session() as http, http.get(f"{base}/hello") as response:
        assert response.status == 200
    for side in ("server", "client"):
        bounds = sorted(
            float(sample.labels["le"])
            for metric in telemetry.registry.collect()
            if metric.name == f"http_{side}_request_duration_seconds"
            for sample in metric.samples
            if sample.name.endswith("_bucket")
            and sample.labels.get("http_route", "/hello") == "/hello"
        )
        assert bounds and sorted(set(bounds)) == [*LATENCY_BUCKETS, float("inf")], side


async def test_a_5xx_answer_returned_is_an_error_span_without_a_description(
    spans: InMemorySpanExporter,
) -> None:
    """Only an exception gives the error a description; a 503 the handler returns has none,
    and a 499 (under 500) is not an error."""
    telemetry = Telemetry.setup("mutation-svc", install_global=False)
    app = web.Application(middlewares=[telemetry.middleware])

    async def unavailable(request: web.Request) -> web.Response:
        return web.Response(status=503)

    async def closed(request: web.Request) -> web.Response:
        return web.Response(status=499)

    async def server_error(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app.router.add_get("/unavailable", unavailable)
    app.router.add_get("/closed", closed)
    app.router.add_get("/error", server_error)
    async with serving(app) as base, aiohttp.ClientSession() as http:
        for path in ("/unavailable", "/closed", "/error"):
            async with http.get(f"{base}{path}") as response:
                await response.read()
    by_route = {
        s.attributes["http.route"]: s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.SERVER and s.attributes is not None
    }
    assert by_route["/unavailable"].status.status_code is trace.StatusCode.ERROR
    assert by_route["/unavailable"].status.description is None
    assert by_route["/error"].status.status_code is trace.StatusCode.ERROR
    assert by_route["/closed"].status.status_code is trace.StatusCode.UNSET
    assert by_route["/closed"].attributes["http.response.status_code"] == 499


async def test_a_scraper_that_sends_no_accept_header_gets_the_text_format(
    served: tuple[str, Telemetry],
) -> None:
    base, _ = served
    async with (
        aiohttp.ClientSession(skip_auto_headers=["Accept"]) as http,
        http.get(f"{base}/metrics") as response,
    ):
        assert "Accept" not in response.request_info.headers
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "http_server_request_duration_seconds" in await response.text()


async def _timed(
    http: aiohttp.ClientSession, url: str, telemetry: Telemetry, side: str, where: dict[str, str]
) -> tuple[float, float]:
    """GET ``url`` once: the ``side`` ("server" or "client") duration recorded for it (``where``:
    its route, or the server's address) and the time the caller measured."""
    started = time.perf_counter()
    async with http.get(url) as response:
        assert response.status == 200
    took = time.perf_counter() - started
    labels = {
        "http_request_method": "GET",
        **where,
        "http_response_status_code": "200",
    }
    recorded = telemetry.registry.get_sample_value(
        f"http_{side}_request_duration_seconds_sum", labels
    )
    assert recorded is not None, (side, labels)
    return recorded, took


async def test_a_request_is_timed_from_its_start_to_its_end(
    served: tuple[str, Telemetry],
) -> None:
    """Bounded by the caller's own clock, so a loaded machine cannot fail it."""
    base, telemetry = served
    async with aiohttp.ClientSession() as http:
        recorded, took = await _timed(
            http, f"{base}/hello", telemetry, "server", {"http_route": "/hello"}
        )
    assert 0 < recorded <= took


async def test_an_error_that_escapes_the_handler_is_counted_under_its_status(
    spans: InMemorySpanExporter,
) -> None:
    """Without a problem middleware inside it: an HTTP exception under its own status (and
    stamped with the trace), anything else as the 500 aiohttp answers. mutmut leaves the
    middleware itself alone (a decorated function); these were mutated by hand. (``spans``
    installs the recording SDK provider the stamp needs, whichever test ran before.)"""
    telemetry = Telemetry.setup("mutation-svc", install_global=False)
    app = web.Application(middlewares=[telemetry.middleware])

    async def conflict(request: web.Request) -> web.Response:
        raise web.HTTPConflict()

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    app.router.add_get("/conflict", conflict)
    app.router.add_get("/crash", crash)
    async with serving(app) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/conflict") as response:
            assert response.status == 409
            assert "traceparent" in response.headers
        async with http.get(f"{base}/crash") as response:
            assert response.status == 500
    count = "http_server_request_duration_seconds_count"
    for route, status in (("/conflict", "409"), ("/crash", "500")):
        labels = {
            "http_request_method": "GET",
            "http_route": route,
            "http_response_status_code": status,
        }
        assert telemetry.registry.get_sample_value(count, labels) == 1, route


async def test_a_client_call_is_timed_from_its_start_to_its_end(
    served: tuple[str, Telemetry],
) -> None:
    base, telemetry = served
    async with telemetry.client_session() as http:
        recorded, took = await _timed(
            http, f"{base}/hello", telemetry, "client", {"server_address": "127.0.0.1"}
        )
    assert 0 < recorded <= took


async def test_a_client_session_keeps_its_callers_options(served: tuple[str, Telemetry]) -> None:
    _, telemetry = served
    timeout = aiohttp.ClientTimeout(total=3)
    async with telemetry.client_session(timeout=timeout, headers={"X-Caller": "yes"}) as http:
        assert http.timeout is timeout
        assert http.headers["X-Caller"] == "yes"


def test_every_key_that_names_a_secret_is_redacted_at_any_depth() -> None:
    """mutmut does not mutate the key patterns (module constants): dropping ``password``,
    ``passwd``, ``secret`` or ``credential`` from them passed every other test."""
    keys = [
        "Authorization",
        "api_key",
        "X-Api-Key",
        "access_token",
        "password",
        "db_passwd",
        "client_secret",
        "mpesa_pin",
        "credentials",
    ]
    assert redact_mapping({k: "s3cret" for k in keys}) == {k: "[REDACTED]" for k in keys}
    nested = {"body": {"password": "s3cret", "phone": "254712345678", "note": "ok"}}
    assert redact_mapping(nested) == {
        "body": {"password": "[REDACTED]", "phone": "2547*****678", "note": "ok"}
    }


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("254712345678", "2547*****678"),
        ("0712345678", "*******678"),
        ("+254 712 345 678", "+*** *** *** 678"),
        ("07-12-34-56-78", "**-**-**-*6-78"),
        (712345678, "******678"),
    ],
)
def test_a_key_that_names_a_phone_masks_it_in_any_format(value: object, masked: str) -> None:
    """Under ``phone`` or ``msisdn`` every digit but the last three is masked, whatever the
    number's format; elsewhere only a number in the international form is (mutation testing
    found the key's kind made no difference)."""
    assert redact_value("customer_phone", value) == masked
    assert redact_value("msisdn", value) == masked
    assert redact_value("phone", "2547*****678") == "2547*****678"  # masked already
    assert redact_value("note", "call 0712345678") == "call 0712345678"
    assert redact_value("note", "call 254712345678") == "call 2547*****678"

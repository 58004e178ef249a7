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

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from safiri_telemetry import Telemetry, redact_mapping
from safiri_telemetry._aiohttp import _exemplar, _stamp
from safiri_telemetry._redaction import redact_value
from tests.conftest import serving

pytestmark = pytest.mark.unit


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[str, Telemetry]]:
    telemetry = Telemetry.setup("mutation-svc", install_global=False)
    app = web.Application(middlewares=[telemetry.middleware])

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/hello", hello)
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

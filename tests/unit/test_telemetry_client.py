"""libs/telemetry: ``Telemetry.client_session()`` calls are CLIENT spans that carry the trace on.

Against a real aiohttp server on loopback: the span's parent, name and attributes, the
``traceparent`` the server receives, the status of an answered error and of a refused
connection, the query string kept out, and the client latency histogram moving once per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from safiri_telemetry import Telemetry, business_span, http_step, outside_http_step
from tests.conftest import free_port, serving

pytestmark = pytest.mark.unit


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A server answering ``/status/{code}``; yields its base URL and the headers it saw."""
    seen: list[dict[str, str]] = []

    async def status(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({}, status=int(request.match_info["code"]))

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    async with serving(app) as base:
        yield base, seen


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry.setup("client-svc", install_global=False)


def client_spans(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]


def client_count(telemetry: Telemetry, host: str, status: str) -> float:
    value = telemetry.registry.get_sample_value(
        "http_client_request_duration_seconds_count",
        {"http_request_method": "GET", "server_address": host, "http_response_status_code": status},
    )
    return value or 0.0


def http_attributes(base: str, path: str, status: int) -> dict[str, object]:
    """What a call to ``base + path`` answered ``status`` puts on its span."""
    return {
        "http.request.method": "GET",
        "url.full": f"{base}{path}",
        "server.address": "127.0.0.1",
        "server.port": int(base.rsplit(":", 1)[1]),
        "http.response.status_code": status,
    }


def traceparent_of(span: ReadableSpan) -> str:
    """The W3C ``traceparent`` that names ``span`` as the server's parent."""
    ctx = span.context
    trace_id, span_id = format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
    return f"00-{trace_id}-{span_id}-{format(ctx.trace_flags, '02x')}"


async def test_a_call_is_a_client_span_under_the_caller_and_the_server_gets_its_context(
    telemetry: Telemetry,
    upstream: tuple[str, list[dict[str, str]]],
    spans: InMemorySpanExporter,
) -> None:
    base, seen = upstream
    async with telemetry.client_session() as http:
        with business_span("request_order") as parent:
            async with http.get(f"{base}/status/200?token=s3cret&phone=254712345678") as r:
                assert r.status == 200

    [span] = client_spans(spans)
    assert span.name == "GET"
    assert span.parent is not None
    assert span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert dict(span.attributes or {}) == http_attributes(base, "/status/200", 200)
    assert span.status.status_code is StatusCode.UNSET
    # W3C trace context on the wire names this very span as the server's parent.
    assert seen[0]["traceparent"] == traceparent_of(span)


@pytest.mark.parametrize("code", [404, 503])
async def test_an_error_answer_marks_the_client_span_and_is_counted_by_status(
    telemetry: Telemetry,
    upstream: tuple[str, list[dict[str, str]]],
    spans: InMemorySpanExporter,
    code: int,
) -> None:
    base, _ = upstream
    async with telemetry.client_session() as http, http.get(f"{base}/status/{code}") as r:
        assert r.status == code

    [span] = client_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == str(code)
    assert (span.attributes or {})["http.response.status_code"] == code
    assert client_count(telemetry, "127.0.0.1", str(code)) == 1.0


async def test_a_refused_connection_is_an_error_span_with_the_exception_and_counted_once(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    port = free_port()  # nobody listens on it
    async with telemetry.client_session() as http:
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.get(f"http://127.0.0.1:{port}/status/200"):
                pass

    [span] = client_spans(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ClientConnectorError"
    assert "http.response.status_code" not in (span.attributes or {})
    assert [e.name for e in span.events] == ["exception"]
    assert client_count(telemetry, "127.0.0.1", "error") == 1.0


async def test_each_call_is_one_span_and_one_latency_sample(
    telemetry: Telemetry,
    upstream: tuple[str, list[dict[str, str]]],
    spans: InMemorySpanExporter,
) -> None:
    base, _ = upstream
    async with telemetry.client_session() as http:
        for _ in range(3):
            async with http.get(f"{base}/status/200") as r:
                await r.read()

    assert len(client_spans(spans)) == 3
    assert client_count(telemetry, "127.0.0.1", "200") == 3.0


async def test_semconv_opt_in_http_dup_adds_the_old_attributes_beside_the_stable_ones(
    upstream: tuple[str, list[dict[str, str]]], spans: InMemorySpanExporter
) -> None:
    """``OTEL_SEMCONV_STABILITY_OPT_IN=http/dup`` reaches the instrumentation package: a
    dashboard still reading the old names keeps working during a migration."""
    base, _ = upstream
    env = {
        "OTEL_SEMCONV_STABILITY_OPT_IN": "http/dup",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    dup = Telemetry.setup("client-svc", env=env, install_global=False)
    async with dup.client_session() as http, http.get(f"{base}/status/200") as r:
        assert r.status == 200
    [span] = client_spans(spans)
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == attributes["http.method"] == "GET"
    assert attributes["http.response.status_code"] == attributes["http.status_code"] == 200


# --- http_step: a business step that is one HTTP call is one CLIENT span, not two ---------------


async def test_an_http_step_is_one_client_span_with_the_call_on_it_and_the_server_its_child(
    telemetry: Telemetry,
    upstream: tuple[str, list[dict[str, str]]],
    spans: InMemorySpanExporter,
) -> None:
    base, seen = upstream
    async with telemetry.client_session() as http:
        with business_span("handle") as outer, http_step("request_order", {"safiri.trip.id": "t1"}):
            async with http.get(f"{base}/status/201?token=s3cret") as r:
                assert r.status == 201

    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["request_order", "handle"]  # no "GET" span beside it
    step = finished[0]
    assert step.kind is SpanKind.CLIENT
    assert step.parent is not None and step.parent.span_id == outer.get_span_context().span_id
    assert dict(step.attributes or {}) == {
        "safiri.trip.id": "t1",
        **http_attributes(base, "/status/201", 201),
    }
    assert step.status.status_code is StatusCode.UNSET
    # The server's parent on the wire is the step itself.
    assert seen[0]["traceparent"] == traceparent_of(step)
    assert client_count(telemetry, "127.0.0.1", "201") == 1.0  # the latency metric still moves


async def test_an_http_step_answered_5xx_says_so_and_a_refused_connection_names_the_error(
    telemetry: Telemetry,
    upstream: tuple[str, list[dict[str, str]]],
    spans: InMemorySpanExporter,
) -> None:
    base, _ = upstream
    async with telemetry.client_session() as http:
        for status in (503, 500, 499):  # 5xx is an error from 500 on, and only 5xx
            with http_step("request_order"):
                async with http.get(f"{base}/status/{status}") as r:
                    assert r.status == status
        with pytest.raises(aiohttp.ClientConnectorError), http_step("request_order"):
            async with http.get(f"http://127.0.0.1:{free_port()}/status/200"):
                pass

    answered, first_5xx, last_4xx, refused = spans.get_finished_spans()
    assert (answered.attributes or {})["http.response.status_code"] == 503
    assert (answered.attributes or {})["error.type"] == "503"
    assert (first_5xx.attributes or {})["error.type"] == "500"
    assert (last_4xx.attributes or {})["http.response.status_code"] == 499
    assert "error.type" not in (last_4xx.attributes or {})
    assert refused.status.status_code is StatusCode.ERROR  # the step's exception
    assert (refused.attributes or {})["error.type"] == "ClientConnectorError"
    assert "http.response.status_code" not in (refused.attributes or {})


async def test_a_call_outside_a_step_or_a_second_call_in_one_keeps_its_own_client_span(
    telemetry: Telemetry,
    upstream: tuple[str, list[dict[str, str]]],
    spans: InMemorySpanExporter,
) -> None:
    """Only the step's first call is the step; any other call is a span of its own, so no
    call is ever hidden in another's span."""
    base, seen = upstream
    async with telemetry.client_session() as http:
        with http_step("fetch_twice"):
            for _ in range(2):
                async with http.get(f"{base}/status/200") as r:
                    await r.read()
        async with http.get(f"{base}/status/200") as r:
            await r.read()

    by_name = [s.name for s in spans.get_finished_spans()]
    assert sorted(by_name) == ["GET", "GET", "fetch_twice"]
    step = next(s for s in spans.get_finished_spans() if s.name == "fetch_twice")
    second = next(s for s in spans.get_finished_spans() if s.name == "GET" and s.parent)
    assert second.parent is not None and second.parent.span_id == step.context.span_id
    assert len({h["traceparent"] for h in seen}) == 3


async def test_a_call_the_step_makes_on_the_way_keeps_its_own_span_and_the_next_is_the_step(
    telemetry: Telemetry,
    upstream: tuple[str, list[dict[str, str]]],
    spans: InMemorySpanExporter,
) -> None:
    """A credential fetched inside a step (the provider's OAuth token before an STK push) is
    not the step's call: under ``outside_http_step`` it is a client span of its own, the
    step's child, and the call after it is the step."""
    base, seen = upstream
    async with telemetry.client_session() as http:
        with http_step("provider.stk_push"):
            with outside_http_step():
                async with http.get(f"{base}/status/200") as r:
                    await r.read()
            async with http.get(f"{base}/status/202") as r:
                assert r.status == 202

    token, step = spans.get_finished_spans()
    assert (token.name, token.kind) == ("GET", SpanKind.CLIENT)
    assert token.parent is not None and token.parent.span_id == step.context.span_id
    assert step.name == "provider.stk_push"
    assert (step.attributes or {})["http.response.status_code"] == 202  # the second call's
    assert seen[1]["traceparent"] == traceparent_of(step)

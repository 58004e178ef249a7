"""libs/telemetry: spans, metrics and log lines proven on a real aiohttp server."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from safiri_telemetry import (
    ConfigError,
    Telemetry,
    TelemetryConfig,
    business_span,
    mask_phone,
    redact_mapping,
)
from safiri_web import Problem, problem_middleware
from tests.conftest import serving

pytestmark = pytest.mark.unit


@pytest_asyncio.fixture
async def served(
    spans: InMemorySpanExporter,
) -> AsyncIterator[tuple[str, Telemetry, io.StringIO]]:
    logs = io.StringIO()
    telemetry = Telemetry.setup("unit-svc", install_global=False, log_stream=logs)
    app = web.Application(middlewares=[telemetry.middleware, problem_middleware])

    async def order(request: web.Request) -> web.Response:
        from loguru import logger

        with business_span(
            "hold_seats",
            {"safiri.order.id": request.match_info["order_id"], "phone": "254712345678"},
        ):
            logger.bind(order_id=request.match_info["order_id"]).info("working")
        return web.json_response({"ok": True})

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    async def refuse(request: web.Request) -> web.Response:
        raise Problem(409, "seats-unavailable", "Not enough free seats")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.06)  # a server that takes 60 ms, to land in a known bucket
        return web.json_response({})

    app.router.add_get("/orders/{order_id}", order)
    app.router.add_get("/slow", slow)
    app.router.add_get("/boom", boom)
    app.router.add_get("/refuse", refuse)
    app.router.add_get("/metrics", telemetry.metrics_handler)
    async with serving(app) as url:
        yield url, telemetry, logs


def log_lines(logs: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in logs.getvalue().splitlines()]


async def test_every_log_line_of_a_request_carries_the_trace_id_of_its_response(
    served: tuple[str, Telemetry, io.StringIO], spans: InMemorySpanExporter
) -> None:
    base, _, logs = served
    async with aiohttp.ClientSession() as http, http.get(f"{base}/orders/o-42") as response:
        trace_id = response.headers["X-Trace-Id"]
        assert response.headers["traceparent"].split("-")[1] == trace_id

    lines = [ln for ln in log_lines(logs) if ln["message"] in ("working", "request handled")]
    assert len(lines) == 2
    assert all(ln["trace_id"] == trace_id and ln["service"] == "unit-svc" for ln in lines)
    assert lines[0]["order_id"] == "o-42"
    server = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert server.name == "GET /orders/{order_id}"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/orders/{order_id}"
    step = next(s for s in spans.get_finished_spans() if s.name == "hold_seats")
    assert step.parent is not None and step.parent.span_id == server.context.span_id
    assert step.attributes is not None
    assert step.attributes["safiri.order.id"] == "o-42"
    assert step.attributes["phone"] == "2547*****678"


async def test_the_latency_histogram_counts_each_request_once_by_route_template(
    served: tuple[str, Telemetry, io.StringIO],
) -> None:
    base, telemetry, _ = served
    labels = {
        "http_request_method": "GET",
        "http_route": "/orders/{order_id}",
        "http_response_status_code": "200",
    }
    before = (
        telemetry.registry.get_sample_value("http_server_request_duration_seconds_count", labels)
        or 0
    )
    async with aiohttp.ClientSession() as http:
        for order_id in ("a", "b", "c"):
            async with http.get(f"{base}/orders/{order_id}"):
                pass
    reg = telemetry.registry
    assert reg.get_sample_value("http_server_request_duration_seconds_count", labels) == before + 3
    assert (
        reg.get_sample_value(
            "http_server_request_duration_seconds_bucket", {**labels, "le": "10.0"}
        )
        == before + 3
    )


async def test_an_unhandled_error_is_a_500_problem_counted_and_logged_with_its_stack(
    served: tuple[str, Telemetry, io.StringIO], spans: InMemorySpanExporter
) -> None:
    base, telemetry, logs = served
    async with aiohttp.ClientSession() as http, http.get(f"{base}/boom") as response:
        body = await response.json(content_type=None)
        assert response.status == 500
        assert response.headers["Content-Type"].startswith("application/problem+json")
    assert body["trace_id"] == response.headers["X-Trace-Id"]
    assert "secret internals" not in json.dumps(body)
    assert (
        telemetry.registry.get_sample_value(
            "http_server_request_duration_seconds_count",
            {
                "http_request_method": "GET",
                "http_route": "/boom",
                "http_response_status_code": "500",
            },
        )
        == 1
    )
    error = next(ln for ln in log_lines(logs) if ln["level"] == "ERROR")
    assert error["trace_id"] == body["trace_id"]
    assert error["exception"]["type"] == "RuntimeError"  # type: ignore[index]
    assert "Traceback" in error["exception"]["stacktrace"]  # type: ignore[index]
    server = next(s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER)
    assert server.status.status_code is StatusCode.ERROR


async def test_a_problem_keeps_its_status_and_type(
    served: tuple[str, Telemetry, io.StringIO],
) -> None:
    base, _, _ = served
    async with aiohttp.ClientSession() as http, http.get(f"{base}/refuse") as response:
        body = await response.json(content_type=None)
    assert response.status == 409
    assert body["type"].endswith("/seats-unavailable")
    assert body["status"] == 409
    assert body["trace_id"] == response.headers["X-Trace-Id"]


async def test_an_unknown_path_is_a_404_problem_under_a_bounded_route_label(
    served: tuple[str, Telemetry, io.StringIO],
) -> None:
    base, telemetry, _ = served
    async with aiohttp.ClientSession() as http, http.get(f"{base}/no/such/254712345678") as r:
        assert r.status == 404
        assert r.headers["Content-Type"].startswith("application/problem+json")
    exposed = telemetry.registry.get_sample_value(
        "http_server_request_duration_seconds_count",
        {
            "http_request_method": "GET",
            "http_route": "unmatched",
            "http_response_status_code": "404",
        },
    )
    assert exposed == 1


def test_secrets_and_phone_numbers_are_redacted() -> None:
    redacted = redact_mapping(
        {
            "authorization": "Bearer abc",
            "api_key": "k",
            "callback_token": "t",
            "pin": "1234",
            "phone": "254712345678",
            "note": "call 254700001032 now",
            "order_id": "o-1",
        }
    )
    assert redacted == {
        "authorization": "[REDACTED]",
        "api_key": "[REDACTED]",
        "callback_token": "[REDACTED]",
        "pin": "[REDACTED]",
        "phone": "2547*****678",
        "note": "call 2547*****032 now",
        "order_id": "o-1",
    }
    assert mask_phone("254112345678") == "2541*****678"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, "OTEL_RESOURCE_ATTRIBUTES"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "10%"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
            "OTEL_TRACES_SAMPLER_ARG",
        ),
    ],
)
def test_a_bad_otel_variable_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        TelemetryConfig.from_env("svc", "1.0", env)


def test_standard_variables_set_the_resource_and_endpoint() -> None:
    config = TelemetryConfig.from_env(
        "svc",
        "1.0",
        {
            "OTEL_SERVICE_NAME": "payment",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=staging,team=rails",
        },
    )
    assert config.service_name == "payment"
    assert config.traces_endpoint == "http://collector:4318/v1/traces"
    assert config.environment == "staging"
    assert config.resource_attributes == {"team": "rails"}


def test_each_process_is_a_service_instance_of_its_own_unless_named() -> None:
    """Replicas of one service must be told apart in traces: a fresh id per process, or the
    name the deployment gives it (a pod's name, `safiri up`'s gateway-1)."""
    from safiri_telemetry._tracing import build_resource

    one = build_resource(TelemetryConfig.from_env("svc", "1.0", {}))
    two = build_resource(TelemetryConfig.from_env("svc", "1.0", {}))
    first, second = one.attributes["service.instance.id"], two.attributes["service.instance.id"]
    assert isinstance(first, str) and len(first) == 36 and first != second
    named = {"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=gateway-1"}
    resource = build_resource(TelemetryConfig.from_env("svc", "1.0", named))
    assert resource.attributes["service.instance.id"] == "gateway-1"


def test_the_resource_is_the_sdks_own() -> None:
    from opentelemetry.sdk.resources import Resource

    from safiri_telemetry._tracing import build_resource

    resource = build_resource(TelemetryConfig.from_env("svc", "1.0", {}))
    assert type(resource) is Resource  # no subclass of SDK internals
    assert resource.attributes["service.name"] == "svc"


async def test_latency_histograms_carry_the_trace_id_as_an_openmetrics_exemplar(
    served: tuple[str, Telemetry, io.StringIO],
) -> None:
    base, _, _ = served
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/orders/ex-1") as response:
            trace_id = response.headers["X-Trace-Id"]
        async with http.get(
            f"{base}/metrics", headers={"Accept": "application/openmetrics-text"}
        ) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            text = await response.text()
    bucket_lines = [
        line
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket")
        and 'http_route="/orders/{order_id}"' in line
        and "#" in line
    ]
    assert any(f'trace_id="{trace_id}"' in line for line in bucket_lines), bucket_lines


async def test_without_a_recording_span_there_is_no_exemplar() -> None:
    from safiri_telemetry._aiohttp import _exemplar

    assert _exemplar() is None


def test_a_failing_business_step_is_an_error_span_with_the_exception_recorded(
    spans: InMemorySpanExporter,
) -> None:
    with (
        pytest.raises(ValueError, match="no seats"),
        business_span("hold_seats", {"safiri.trip.id": "t-1"}),
    ):
        raise ValueError("no seats")
    (span,) = [s for s in spans.get_finished_spans() if s.name == "hold_seats"]
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: no seats"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"


class _SoldOut(Exception):
    pass


def test_a_business_refusal_is_an_event_on_an_unset_span_not_an_error(
    spans: InMemorySpanExporter,
) -> None:
    """A refusal the step declares (seats sold out) is the business answering, not a failure:
    OpenTelemetry's status stays unset, the refusal is an event and an attribute, and the
    exception still reaches the caller. Anything else is still an error."""
    with (
        pytest.raises(_SoldOut),
        business_span("hold_seats", {"safiri.trip.id": "t-1"}, refusals=(_SoldOut,)),
    ):
        raise _SoldOut("2 seats asked, 0 free")
    with (
        pytest.raises(ValueError, match="database gone"),
        business_span("hold_seats", {"safiri.trip.id": "t-2"}, refusals=(_SoldOut,)),
    ):
        raise ValueError("database gone")
    refused, failed = [s for s in spans.get_finished_spans() if s.name == "hold_seats"]
    assert refused.status.status_code is StatusCode.UNSET
    assert refused.attributes is not None
    assert refused.attributes["safiri.outcome"] == "refused"
    (event,) = refused.events
    assert event.name == "refused"
    assert dict(event.attributes or {}) == {
        "safiri.refusal.reason": "_SoldOut",
        "safiri.refusal.message": "2 seats asked, 0 free",
    }
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


async def test_standard_library_logging_goes_through_the_json_sink(
    served: tuple[str, Telemetry, io.StringIO],
) -> None:
    import logging

    _, _, logs = served
    logging.getLogger("aio_pika.robust_connection").warning("connection lost: %s", "reset")
    (line,) = [ln for ln in log_lines(logs) if ln["message"] == "connection lost: reset"]
    assert line["level"] == "WARNING"
    assert line["logger"] == "aio_pika.robust_connection"


async def test_a_request_lands_in_the_bucket_of_its_duration(
    served: tuple[str, Telemetry, io.StringIO],
) -> None:
    base, telemetry, _ = served
    labels = {
        "http_request_method": "GET",
        "http_route": "/slow",
        "http_response_status_code": "200",
    }
    async with aiohttp.ClientSession() as http, http.get(f"{base}/slow") as response:
        assert response.status == 200
    bucket = telemetry.registry.get_sample_value
    name = "http_server_request_duration_seconds_bucket"
    assert bucket(name, {**labels, "le": "0.05"}) == 0
    assert bucket(name, {**labels, "le": "0.1"}) == 1


def test_the_access_line_stays_on_stdout_and_business_lines_go_over_otlp() -> None:
    from safiri_telemetry._otlp_logs import exported_over_otlp

    assert not exported_over_otlp({"name": "safiri_telemetry._aiohttp"})  # type: ignore[typeddict-item]
    assert exported_over_otlp({"name": "safiri_ticketing.service_layer.handlers"})  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("env", "sampled_roots", "child_of_sampled", "child_of_unsampled"),
    [
        ({}, 200, True, False),  # parentbased_always_on, the specification's default
        ({"OTEL_TRACES_SAMPLER": "always_off"}, 0, False, False),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, 200, True, True),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
            range(25, 80),  # 200 random trace ids at 1 in 4: 50 expected
            True,
            False,
        ),
    ],
)
def test_the_sampler_comes_from_the_variables_given_to_setup(
    env: dict[str, str],
    sampled_roots: int | range,
    child_of_sampled: bool,
    child_of_unsampled: bool,
) -> None:
    """From ``env``, not from the process environment, like every other setting."""
    telemetry = Telemetry.setup(
        "sampled-svc",
        env=env,
        install_global=False,
        log_stream=io.StringIO(),
        span_processor=SimpleSpanProcessor(InMemorySpanExporter()),
    )
    provider = telemetry.tracer_provider
    assert provider is not None
    tracer = provider.get_tracer("test")
    roots = [tracer.start_span("root") for _ in range(200)]
    count = sum(span.get_span_context().trace_flags.sampled for span in roots)
    if isinstance(sampled_roots, range):
        assert count in sampled_roots
    else:
        assert count == sampled_roots

    def child_sampled(parent_sampled: bool) -> bool:
        parent = SpanContext(0xABC, 0xDEF, True, TraceFlags(1 if parent_sampled else 0))
        context = set_span_in_context(NonRecordingSpan(parent))
        return tracer.start_span("child", context=context).get_span_context().trace_flags.sampled

    assert child_sampled(True) is child_of_sampled
    assert child_sampled(False) is child_of_unsampled

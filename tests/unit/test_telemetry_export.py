"""libs/telemetry: a collector that is down or slow never slows a service down, and is reported.

Each test builds its own tracer provider (``install_global=False``) and ends spans on a tracer
taken from it, so the process-wide provider of the ``spans`` fixture is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from loguru import logger
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from safiri.otlp import SpanStore, running_receiver
from safiri_telemetry import BatchSettings, ConfigError, DroppedSpans, Telemetry, TelemetryConfig
from tests.conftest import eventually, free_port, serving

pytestmark = pytest.mark.unit

SPANS = 1000
BURSTS = 5
# Ending spans may cost a little more while a batch is encoded on the export thread, but
# nowhere near what waiting for the collector would cost: the export timeout for every batch.
SLOWDOWN_BOUND = 5.0
SHUTDOWN_BOUND_SECONDS = 4.0  # the shutdown budget (3 s) and some slack
FAILURES = "telemetry_export_failures_total"
# A queue that 1000 spans overflow while the first batch is out, so drops happen on the spot.
QUEUE, BATCH = 256, 128
SMALL_QUEUE = {"OTEL_BSP_MAX_QUEUE_SIZE": str(QUEUE), "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(BATCH)}


def end_spans(tracer: Tracer, count: int = SPANS) -> float:
    """Seconds it takes to start and end ``count`` spans, as request handling does."""
    started = time.perf_counter()
    for i in range(count):
        with tracer.start_as_current_span("hold_seats", attributes={"safiri.order.id": str(i)}):
            pass
    return time.perf_counter() - started


def failures(telemetry: Telemetry) -> float:
    return telemetry.registry.get_sample_value(FAILURES, {"signal": "traces"}) or 0.0


def warnings(logs: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    return [ln for ln in lines if ln["level"] in {"WARNING", "ERROR", "CRITICAL"}]


def exporting_to(endpoint: str, logs: io.StringIO, **env: str) -> Telemetry:
    return Telemetry.setup(
        "export-test",
        install_global=False,
        log_stream=logs,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env},
    )


def tracer_of(telemetry: Telemetry) -> Tracer:
    assert telemetry.tracer_provider is not None
    return telemetry.tracer_provider.get_tracer("export-test")


async def timed_shutdown(telemetry: Telemetry) -> float:
    started = time.perf_counter()
    await telemetry.shutdown()
    return time.perf_counter() - started


def compare_with_baseline(tracer: Tracer) -> tuple[float, float]:
    """Median seconds per burst with ``tracer`` and with no exporter at all, interleaved.

    The median keeps a burst that another process's load happened to slow out of it.
    """
    bare = TracerProvider().get_tracer("baseline")
    exporting: list[float] = []
    baseline: list[float] = []
    for _ in range(BURSTS):
        baseline.append(end_spans(bare))
        exporting.append(end_spans(tracer))
    print(
        f"\n{SPANS} spans, ms per burst: exporting {[round(t * 1000, 1) for t in exporting]},"
        f" baseline {[round(t * 1000, 1) for t in baseline]}"
    )
    return statistics.median(exporting), statistics.median(baseline)


@asynccontextmanager
async def slow_collector(delay: float) -> AsyncIterator[tuple[SpanStore, str]]:
    """An OTLP/HTTP receiver that takes ``delay`` seconds to answer each batch."""
    store = SpanStore()
    released = asyncio.Event()

    async def export(request: web.Request) -> web.Response:
        body = await request.read()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(released.wait(), delay)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        store.add(message)
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/v1/traces", export)
    async with serving(app) as url:
        try:
            yield store, url
        finally:
            released.set()  # the held exports answer, so that cleanup does not wait on them


def assert_reported_in_few_warnings(logs: io.StringIO, dropped: float) -> None:
    found = warnings(logs)
    assert 1 <= len(found) <= 2, found
    # The exporter's own retry and failure lines are held back, not written per batch.
    assert not [ln for ln in found if str(ln.get("logger", "")).startswith("opentelemetry")]
    assert sum(ln["dropped_spans"] for ln in found) == dropped


async def test_a_collector_that_is_down_costs_requests_nothing_and_every_span_is_counted() -> None:
    logs = io.StringIO()
    telemetry = exporting_to(
        f"http://127.0.0.1:{free_port()}", logs, OTEL_BSP_EXPORT_TIMEOUT="1000", **SMALL_QUEUE
    )
    tracer = tracer_of(telemetry)

    exporting, baseline = compare_with_baseline(tracer)
    assert exporting < SLOWDOWN_BOUND * baseline
    # Spans the full queue refused are counted at once, not when an export gives up.
    assert failures(telemetry) >= BURSTS * SPANS - QUEUE - BATCH
    shutdown = await timed_shutdown(telemetry)
    print(f"shutdown with the collector down: {shutdown:.2f} s")

    assert shutdown < SHUTDOWN_BOUND_SECONDS
    assert failures(telemetry) == BURSTS * SPANS
    assert_reported_in_few_warnings(logs, BURSTS * SPANS)


async def test_a_collector_slower_than_the_export_timeout_costs_requests_nothing() -> None:
    logs = io.StringIO()
    async with slow_collector(delay=5.0) as (_, url):
        # A queue that holds every span: whatever is counted failed to export.
        telemetry = exporting_to(
            url, logs, OTEL_BSP_EXPORT_TIMEOUT="500", OTEL_BSP_MAX_QUEUE_SIZE="8192"
        )
        tracer = tracer_of(telemetry)

        exporting, baseline = compare_with_baseline(tracer)
        assert exporting < SLOWDOWN_BOUND * baseline
        first_batch = telemetry.config.batch.max_export_batch_size

        async def first_batch_counted() -> bool:
            return failures(telemetry) >= first_batch

        await eventually(first_batch_counted, timeout=10, what="a timed-out batch to be counted")
        shutdown = await timed_shutdown(telemetry)
    print(f"shutdown with a slow collector: {shutdown:.2f} s")

    assert shutdown < SHUTDOWN_BOUND_SECONDS
    assert failures(telemetry) == BURSTS * SPANS
    assert_reported_in_few_warnings(logs, BURSTS * SPANS)


async def test_the_counter_rises_by_exactly_the_spans_the_collector_did_not_receive() -> None:
    logs = io.StringIO()
    async with slow_collector(delay=0.2) as (store, url):
        telemetry = exporting_to(url, logs, OTEL_BSP_EXPORT_TIMEOUT="3000", **SMALL_QUEUE)
        end_spans(tracer_of(telemetry))
        await telemetry.shutdown()

    received = len(store.spans)
    print(f"\nslow but working collector, small queue: {received} received, rest dropped")
    assert 0 < received < SPANS
    assert failures(telemetry) == SPANS - received
    found = warnings(logs)
    assert 1 <= len(found) <= 2
    assert set().union(*(ln["dropped_by_cause"] for ln in found)) == {"queue_full"}


async def test_a_reachable_collector_receives_every_span_and_nothing_is_counted() -> None:
    logs = io.StringIO()
    async with running_receiver() as (store, url):
        telemetry = exporting_to(url, logs)
        end_spans(tracer_of(telemetry))
        await telemetry.shutdown()

    assert len(store.spans) == SPANS
    assert failures(telemetry) == 0
    assert warnings(logs) == []


async def test_a_collector_that_refuses_the_spans_is_reported_with_its_answer() -> None:
    logs = io.StringIO()
    async with running_receiver() as (_, url):
        # A wrong path is a configuration mistake: the collector answers 404 to every batch.
        telemetry = exporting_to(url, logs, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{url}/v1/wrong")
        end_spans(tracer_of(telemetry))
        await telemetry.shutdown()

    assert failures(telemetry) == SPANS
    assert_reported_in_few_warnings(logs, SPANS)
    first = warnings(logs)[0]
    assert "code: 404" in first["export_error"]
    assert first["otlp_endpoint"] == f"{url}/v1/wrong"


def test_dropped_spans_are_reported_once_per_interval_with_the_count_since_the_last() -> None:
    now = [100.0]
    reported: list[dict[str, Any]] = []
    handler = logger.add(lambda m: reported.append(m.record["extra"]), level="WARNING")
    try:
        registry = CollectorRegistry()
        dropped = DroppedSpans(registry, interval=30.0, clock=lambda: now[0])
        dropped.add(512, "export_failed", "connection refused")
        for _ in range(100):
            now[0] += 0.2
            dropped.add(7, "queue_full")
        now[0] += 10.5  # past 30 s since the first warning
        dropped.add(512, "export_failed", "connection refused")
        dropped.report()  # nothing left to report
    finally:
        logger.remove(handler)

    assert [r["dropped_spans"] for r in reported] == [512, 700 + 512]
    assert reported[1]["dropped_by_cause"] == {"queue_full": 700, "export_failed": 512}
    assert reported[1]["export_error"] == "connection refused"
    assert registry.get_sample_value(FAILURES, {"signal": "traces"}) == 512 + 700 + 512


def test_the_failure_counter_is_exposed_at_zero_before_anything_fails() -> None:
    config = TelemetryConfig.from_env("svc", "1.0", {"OTEL_SDK_DISABLED": "true"})
    telemetry = Telemetry(config, CollectorRegistry(), None)
    assert telemetry.registry.get_sample_value(FAILURES, {"signal": "traces"}) == 0


def test_the_bsp_variables_set_the_queue_bounds() -> None:
    config = TelemetryConfig.from_env(
        "svc",
        "1.0",
        {
            "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": " 256 ",
            "OTEL_BSP_SCHEDULE_DELAY": "1000",
            "OTEL_BSP_EXPORT_TIMEOUT": "2000",
        },
    )
    assert config.batch == BatchSettings(
        max_queue_size=4096,
        max_export_batch_size=256,
        schedule_delay_millis=1000,
        export_timeout_millis=2000,
    )
    assert TelemetryConfig.from_env("svc", "1.0", {}).batch == BatchSettings()
    small = TelemetryConfig.from_env("svc", "1.0", {"OTEL_BSP_MAX_QUEUE_SIZE": "100"})
    assert small.batch.max_export_batch_size == 100  # the default batch never exceeds the queue


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "lots"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "0"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "-5"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "0.5"}, "OTEL_BSP_SCHEDULE_DELAY"),
        ({"OTEL_BSP_EXPORT_TIMEOUT": "5s"}, "OTEL_BSP_EXPORT_TIMEOUT"),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "200"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        ),
    ],
)
def test_a_bad_bsp_variable_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        TelemetryConfig.from_env("svc", "1.0", env)


# Run in a fresh interpreter: OTEL_SDK_DISABLED is a process setting, and this test process
# already has an SDK tracer provider (the ``spans`` fixture's).
_DISABLED_SERVICE = """
import asyncio, io, json
from aiohttp import web
from loguru import logger
from opentelemetry import trace
from safiri_telemetry import Telemetry, business_span, publish_span

async def main():
    logs = io.StringIO()
    telemetry = Telemetry.setup("quiet", log_stream=logs)

    async def hold(request):
        headers = {}
        with business_span("hold_seats", {"safiri.order.id": "o-1"}):
            logger.bind(order_id="o-1").info("seats held")
            with publish_span("safiri.events", "seats.held", "m-1", headers):
                pass
        return web.json_response({"message_headers": headers})

    app = web.Application(middlewares=[telemetry.middleware])
    app.router.add_get("/orders/{order_id}/hold", hold)
    app.router.add_get("/metrics", telemetry.metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with telemetry.client_session() as http:
        async with http.get(base + "/orders/o-1/hold") as r:
            hold_status, hold_headers, hold_body = r.status, dict(r.headers), await r.json()
        async with http.get(base + "/metrics") as r:
            metrics = await r.text()
    await runner.cleanup()
    await telemetry.shutdown()
    print(json.dumps({
        "provider": repr(telemetry.tracer_provider),
        "global_provider": type(trace.get_tracer_provider()).__name__,
        "status": hold_status, "headers": hold_headers, "body": hold_body,
        "metrics": metrics, "logs": logs.getvalue(),
    }))

asyncio.run(main())
"""


async def test_with_the_sdk_disabled_requests_metrics_and_logs_still_work_without_traces() -> None:
    env = {**os.environ, "OTEL_SDK_DISABLED": "true"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _DISABLED_SERVICE,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    result = json.loads(out)

    assert result["provider"] == "None"
    assert result["global_provider"] == "ProxyTracerProvider"
    assert result["status"] == 200
    assert "traceparent" not in result["headers"]
    assert "X-Trace-Id" not in result["headers"]
    assert result["body"] == {"message_headers": {}}  # no context to carry
    logs = [json.loads(line) for line in result["logs"].splitlines()]
    assert {"seats held", "request handled"} <= {ln["message"] for ln in logs}
    assert not [ln for ln in logs if "trace_id" in ln]
    assert next(ln for ln in logs if ln["message"] == "seats held")["order_id"] == "o-1"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(result["metrics"])
        for s in family.samples
    }
    server = (
        "http_server_request_duration_seconds_count",
        (
            ("http_request_method", "GET"),
            ("http_response_status_code", "200"),
            ("http_route", "/orders/{order_id}/hold"),
        ),
    )
    assert samples[server] == 1
    assert any(name == "http_client_request_duration_seconds_count" for name, _ in samples)
    assert samples[(FAILURES, (("signal", "traces"),))] == 0


# In a fresh interpreter: the SDK's log export thread outlives the bounded shutdown (it gives up
# on its own later), and a thread retrying an unreachable endpoint must not outlive a test in
# this process (tests/unit/conftest.py).
_QUEUED_LOGS = """
import asyncio, io, sys, time
from loguru import logger
from safiri_telemetry import Telemetry

async def main():
    telemetry = Telemetry.setup(
        "export-test",
        install_global=False,
        log_stream=io.StringIO(),
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": sys.argv[1]},
    )
    assert telemetry.config.logs_endpoint is not None
    for i in range(3000):  # several export batches of 512
        logger.bind(n=i).info("queued while the collector is down")
    started = time.perf_counter()
    await telemetry.shutdown()
    print(time.perf_counter() - started)

asyncio.run(main())
"""


async def test_log_lines_queued_for_a_collector_that_is_down_do_not_hold_shutdown() -> None:
    """The OTLP log export is bounded at shutdown like the spans': the SDK's own shutdown
    exports every queued batch, each trying for the whole export timeout, so a few batches
    held a service past its stop grace (ticketing killed after 15 s in a make test run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _QUEUED_LOGS,
        f"http://127.0.0.1:{free_port()}",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    shutdown = float(out.decode().split()[-1])
    print(f"shutdown with log lines queued and the collector down: {shutdown:.2f} s")
    assert shutdown < SHUTDOWN_BOUND_SECONDS

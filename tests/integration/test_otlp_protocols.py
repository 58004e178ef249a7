"""Spans leave by the protocol, endpoint, headers and compression the OTEL_* variables name:
a real OTLP/HTTP endpoint on loopback and a real OTLP/gRPC server receive them."""

from __future__ import annotations

import asyncio
import gzip
import io
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from safiri_suite.ports import free_port
from safiri_telemetry import Telemetry
from tests.conftest import serving

Received = list[dict[str, Any]]


def _span_names(request: trace_service_pb2.ExportTraceServiceRequest) -> list[str]:
    return [s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]


async def _send_one_span(env: dict[str, str], name: str) -> None:
    telemetry = Telemetry.setup(
        "protocol-svc", env=env, install_global=False, log_stream=io.StringIO(), export_logs=False
    )
    provider = telemetry.tracer_provider
    assert provider is not None
    provider.get_tracer("test").start_span(name).end()
    await asyncio.to_thread(provider.force_flush)
    await telemetry.shutdown()


@pytest_asyncio.fixture
async def http_endpoint() -> AsyncIterator[tuple[str, Received]]:
    received: Received = []

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        received.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "names": _span_names(message),
            }
        )
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/{tail:.*}", traces)
    async with serving(app, auto_decompress=False) as base:  # to see that it came gzipped
        yield base, received


async def test_http_protobuf_with_headers_and_gzip(http_endpoint: tuple[str, Received]) -> None:
    base, received = http_endpoint
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": base,
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=s3cr%20t",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    }
    await _send_one_span(env, "over-http")
    [got] = received
    assert got["path"] == "/v1/traces"
    assert got["headers"]["x-api-key"] == "s3cr t"
    assert got["headers"]["Content-Encoding"] == "gzip"
    assert got["names"] == ["over-http"]


async def test_a_traces_endpoint_of_its_own_is_used_as_it_is(
    http_endpoint: tuple[str, Received],
) -> None:
    base, received = http_endpoint
    await _send_one_span({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{base}/ingest"}, "own-url")
    assert [(r["path"], r["names"]) for r in received] == [("/ingest", ["own-url"])]


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.received: Received = []

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        metadata = dict(context.invocation_metadata() or ())
        self.received.append({"names": _span_names(request), "metadata": metadata})
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"]
)
async def test_grpc_to_a_real_grpc_collector(variable: str) -> None:
    collector = _Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        env = {
            variable: "grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_HEADERS": "tenant=safiri",
        }
        await _send_one_span(env, "over-grpc")
    finally:
        await server.stop(grace=None)
    [got] = collector.received
    assert got["names"] == ["over-grpc"]
    assert got["metadata"]["tenant"] == "safiri"

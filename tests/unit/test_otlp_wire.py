"""libs/telemetry: spans written straight to OTLP wire format decode to the SDK's own message.

A property test builds spans with random names, kinds, attributes of every exportable type,
events, links, statuses and remote or local parents through the real SDK, and compares
``ExportTraceServiceRequest.FromString(encode_spans(spans))`` with the SDK's
``encode_spans(spans)``. The exporter is then shown sending to a real OTLP/HTTP endpoint on
loopback and failing cleanly when it cannot.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from safiri_telemetry._otlp_wire import WireSpanExporter, encode_spans
from tests.conftest import free_port, serving

pytestmark = pytest.mark.unit

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
FLOATS = st.floats(allow_nan=False)  # NaN != NaN: two equal messages would compare unequal
SCALARS = st.one_of(st.text(max_size=80), st.booleans(), INT64, FLOATS, st.binary(max_size=16))
# The SDK keeps homogeneous sequences only; mixed ones are dropped before export.
ARRAYS = st.one_of(
    st.lists(st.text(max_size=10), max_size=4).map(tuple),
    st.lists(INT64, max_size=4).map(tuple),
    st.lists(st.booleans(), max_size=4).map(tuple),
    st.lists(FLOATS, max_size=4).map(tuple),
)
ATTRIBUTES = st.dictionaries(
    st.text(min_size=1, max_size=30), st.one_of(SCALARS, ARRAYS), max_size=8
)
IDS = st.tuples(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1))
STATE = st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    max_size=3,
)


@st.composite
def span_specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(st.text(max_size=40)),
        "scope": draw(st.sampled_from([("safiri", None), ("safiri.aiohttp.server", "1.0")])),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(ATTRIBUTES),
        "events": draw(st.lists(st.tuples(st.text(max_size=20), ATTRIBUTES), max_size=2)),
        "links": draw(st.lists(st.tuples(IDS, ATTRIBUTES, st.booleans()), max_size=2)),
        "status": draw(
            st.sampled_from(
                [None, Status(StatusCode.OK), Status(StatusCode.ERROR, "ValueError: no")]
            )
        ),
        "parent": draw(st.one_of(st.none(), st.tuples(IDS, st.booleans(), STATE))),
    }


def record(specs: list[dict[str, Any]], resource: Resource) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for spec in specs:
        tracer = provider.get_tracer(*spec["scope"])
        context = None
        if spec["parent"] is not None:
            (trace_id, span_id), remote, state = spec["parent"]
            parent = SpanContext(
                trace_id, span_id, remote, TraceFlags(TraceFlags.SAMPLED), TraceState(state.items())
            )
            context = set_span_in_context(NonRecordingSpan(parent))
        links = [
            Link(SpanContext(t, s, remote, TraceFlags(1)), attributes)
            for (t, s), attributes, remote in spec["links"]
        ]
        with tracer.start_as_current_span(
            spec["name"],
            context=context,
            kind=spec["kind"],
            attributes=spec["attributes"],
            links=links,
        ) as span:
            for name, attributes in spec["events"]:
                span.add_event(name, attributes)
            if spec["status"] is not None:
                span.set_status(spec["status"])
    provider.shutdown()
    return list(exporter.get_finished_spans())


# Hypothesis warns when the global random state moves while it draws an example. Nothing here
# uses it, but span exporters left by other tests of the run retry in their own threads with
# random jitter, which moves it at any moment.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(span_specs(), min_size=1, max_size=6))
def test_encoded_spans_decode_to_the_sdk_encoders_message(specs: list[dict[str, Any]]) -> None:
    resource = Resource.create({"service.name": "wire", "service.version": "1"})
    spans = record(specs, resource)
    assert ExportTraceServiceRequest.FromString(encode_spans(spans)) == sdk_encode(spans)


def test_spans_of_two_resources_and_an_unexportable_attribute_are_grouped_as_the_sdk_does() -> None:
    spec = {
        "name": "hold_seats",
        "scope": ("safiri", None),
        "kind": SpanKind.INTERNAL,
        "attributes": {"safiri.seat_count": 2},
        "events": [],
        "links": [],
        "status": None,
        "parent": None,
    }
    one = record([spec, spec], Resource.create({"service.name": "one"}))
    two = record([spec], Resource.create({"service.name": "two"}))
    spans = [one[0], two[0], one[1]]
    decoded = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert decoded == sdk_encode(spans)
    assert [len(r.scope_spans[0].spans) for r in decoded.resource_spans] == [2, 1]
    # A value the SDK's encoder cannot write (an int past int64) is left out by both.
    big = spans[0].attributes
    assert big is not None
    object.__setattr__(spans[0], "_attributes", {**big, "too.big": 2**70, "ok": math.pi})
    decoded = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert decoded == sdk_encode(spans)
    keys = [kv.key for kv in decoded.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["safiri.seat_count", "ok"]


@pytest_asyncio.fixture
async def collector() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """An OTLP/HTTP endpoint on loopback that keeps what it receives."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        received.append(ExportTraceServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    async with serving(app) as base:
        yield f"{base}/v1/traces", received


async def test_the_exporter_delivers_the_batch_to_a_real_endpoint(
    collector: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    endpoint, received = collector
    spec = {
        "name": "POST /api/v1/orders",
        "scope": ("safiri.aiohttp.server", "1.0"),
        "kind": SpanKind.SERVER,
        "attributes": {"http.route": "/api/v1/orders", "http.response.status_code": 202},
        "events": [],
        "links": [],
        "status": None,
        "parent": None,
    }
    spans = record([spec] * 3, Resource.create({"service.name": "gateway"}))
    exporter = WireSpanExporter(endpoint=endpoint, timeout=5)
    try:
        result = await asyncio.to_thread(exporter.export, spans)
    finally:
        exporter.shutdown()
    assert result is SpanExportResult.SUCCESS
    assert received == [sdk_encode(spans)]


async def test_the_exporter_reports_failure_when_nothing_listens() -> None:
    port = free_port()
    spec = {
        "name": "x",
        "scope": ("safiri", None),
        "kind": SpanKind.INTERNAL,
        "attributes": {},
        "events": [],
        "links": [],
        "status": None,
        "parent": None,
    }
    spans = record([spec], Resource.create({"service.name": "gateway"}))
    exporter = WireSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=1)
    try:
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.FAILURE
        exporter.shutdown()
        assert exporter.export(spans) is SpanExportResult.FAILURE  # after shutdown: not sent
    finally:
        exporter.shutdown()


async def test_a_batch_larger_than_the_request_limit_is_not_sent(
    collector: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    """As the SDK's exporter does: a request the collector would refuse fails here instead."""
    endpoint, received = collector
    spec = {
        "name": "x" * 200,
        "scope": ("safiri", None),
        "kind": SpanKind.INTERNAL,
        "attributes": {},
        "events": [],
        "links": [],
        "status": None,
        "parent": None,
    }
    spans = record([spec] * 3, Resource.create({"service.name": "gateway"}))
    size = len(encode_spans(spans))
    exporter = WireSpanExporter(endpoint=endpoint, timeout=5, max_request_size=size - 1)
    try:
        assert await asyncio.to_thread(exporter.export, spans) is SpanExportResult.FAILURE
        assert await asyncio.to_thread(exporter.export, spans[:1]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert received == [sdk_encode(spans[:1])]

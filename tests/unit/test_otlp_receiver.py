"""The test suite's OTLP receiver: it stores what it is sent, refuses what it cannot read."""

from __future__ import annotations

import aiohttp
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri.otlp import SpanStore, running_receiver

pytestmark = pytest.mark.unit


def exported_trace(n: int) -> tuple[bytes, str]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        for i in range(n - 1):
            with tracer.start_as_current_span(f"child-{i}", attributes={"safiri.order.id": "o-1"}):
                pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    return body, format(root.get_span_context().trace_id, "032x")


async def test_spans_posted_over_otlp_http_are_kept_by_trace() -> None:
    body, trace_id = exported_trace(3)
    async with running_receiver() as (store, url), aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/v1/traces", data=body, headers={"Content-Type": "application/x-protobuf"}
        ) as response:
            assert response.status == 200
        spans = store.trace(trace_id)
    assert [s.name for s in spans] == ["root", "child-0", "child-1"]
    assert spans[1].parent_span_id == spans[0].span_id
    assert store.trace_of_order("o-1") == trace_id


async def test_a_payload_that_is_not_otlp_is_refused_and_not_stored() -> None:
    async with (
        running_receiver() as (store, url),
        aiohttp.ClientSession() as http,
        http.post(f"{url}/v1/traces", data=b"\xff\xffnot protobuf") as response,
    ):
        assert response.status == 400
    assert store.spans == []


def test_the_store_is_bounded_and_drops_whole_old_traces() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    store = SpanStore(max_spans=10)
    for _ in range(6):
        body, _ = exported_trace(3)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        store.add(request)
    assert len(store.spans) <= 10
    for trace_id in {s.trace_id for s in store.spans}:
        assert len(store.trace(trace_id)) == 3

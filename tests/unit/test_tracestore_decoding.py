"""OTLP/HTTP bodies, protobuf and JSON, become the same rows; anything else is refused."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from safiri_tracestore.decoding import JSON, PROTOBUF, decode_logs, decode_traces
from safiri_tracestore.payload import (
    MAX_PAYLOAD,
    PayloadError,
    PayloadTooLarge,
    UnsupportedMediaType,
    decompress,
)

pytestmark = pytest.mark.unit

ORDER = "0f8e7c1a-5b2d-4c3e-9f10-1234567890ab"


def sdk_export() -> bytes:
    """A small failed-payment trace as the SDK's OTLP exporter encodes it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "payment"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("POST /callbacks", kind=SpanKind.SERVER) as incoming:
        pass
    with (
        tracer.start_as_current_span("request_payment", attributes={"safiri.order.id": ORDER}),
        tracer.start_as_current_span(
            "handle_callback",
            attributes={"safiri.order.id": ORDER, "safiri.payment.result_code": 1037},
            links=[Link(incoming.get_span_context())],
        ) as span,
    ):
        span.add_event("callback received", {"attempt": 1})
        span.set_status(Status(StatusCode.ERROR, "ResultCode 1037: DS timeout"))
    provider.shutdown()
    return bytes(encode_spans(exporter.get_finished_spans()).SerializeToString())


def as_otlp_json(message: Any) -> bytes:
    """The OTLP/JSON encoding: the protobuf JSON mapping, but ids in hex (the spec's rule)."""
    document = json_format.MessageToDict(message)

    def hexify(node: Any) -> Any:
        if isinstance(node, list):
            return [hexify(n) for n in node]
        if isinstance(node, dict):
            return {
                k: base64.b64decode(v).hex()
                if k in ("traceId", "spanId", "parentSpanId")
                else hexify(v)
                for k, v in node.items()
            }
        return node

    return json.dumps(hexify(document)).encode()


def test_an_sdk_protobuf_export_becomes_one_row_per_span() -> None:
    rows = {r.name: r for r in decode_traces(sdk_export(), PROTOBUF)}
    assert set(rows) == {"POST /callbacks", "request_payment", "handle_callback"}
    failing = rows["handle_callback"]
    assert failing.service == "payment"
    assert failing.parent_span_id == rows["request_payment"].span_id
    assert failing.trace_id == rows["request_payment"].trace_id and len(failing.trace_id) == 32
    assert failing.is_error and failing.status_message == "ResultCode 1037: DS timeout"
    assert failing.attributes["safiri.payment.result_code"] == 1037
    assert failing.order_id == ORDER
    assert failing.links[0]["span_id"] == rows["POST /callbacks"].span_id
    assert failing.events[0]["name"] == "callback received"
    assert failing.events[0]["attributes"] == {"attempt": 1}
    assert failing.resource["service.name"] == "payment"
    assert rows["POST /callbacks"].parent_span_id is None
    assert rows["POST /callbacks"].kind == SpanKind.SERVER.value + 1  # OTLP enum is shifted


def test_otlp_json_with_hex_ids_gives_the_same_rows_as_protobuf() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    body = sdk_export()
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    assert decode_traces(as_otlp_json(message), JSON) == decode_traces(body, PROTOBUF)


def test_the_spec_example_shape_of_otlp_json_is_read() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "gateway"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "my.library"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "EEE19B7EC3C1B173",
                                "name": "POST /api/v1/orders",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "kind": 2,
                                "status": {"code": 2, "message": "boom"},
                                "attributes": [
                                    {"key": "safiri.order.id", "value": {"stringValue": ORDER}},
                                    {"key": "n", "value": {"intValue": "42"}},
                                ],
                                "aFieldFromTheFuture": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }
    (row,) = decode_traces(json.dumps(body).encode(), JSON)
    assert row.trace_id == "5b8efff798038103d269b633813fc60c"
    assert row.span_id == "eee19b7ec3c1b174" and row.parent_span_id == "eee19b7ec3c1b173"
    assert (row.start_ns, row.end_ns, row.kind) == (1544712660000000000, 1544712661000000000, 2)
    assert (row.status_code, row.status_message) == (2, "boom")
    assert row.attributes == {"safiri.order.id": ORDER, "n": 42}
    assert row.order_id == ORDER and row.service == "gateway"


def log_request() -> ExportLogsServiceRequest:
    record = LogRecord(
        time_unix_nano=1_700_000_000_000_000_000,
        severity_number=17,
        body=AnyValue(string_value="payment failed"),
        trace_id=bytes.fromhex("5b8efff798038103d269b633813fc60c"),
        span_id=bytes.fromhex("eee19b7ec3c1b174"),
        attributes=[KeyValue(key="order_id", value=AnyValue(string_value=ORDER))],
    )
    resource = ProtoResource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value="payment"))]
    )
    scope_logs = ScopeLogs(log_records=[record])
    return ExportLogsServiceRequest(
        resource_logs=[ResourceLogs(resource=resource, scope_logs=[scope_logs])]
    )


def test_log_records_decode_from_protobuf_and_json_alike() -> None:
    request = log_request()
    from_proto = decode_logs(request.SerializeToString(), PROTOBUF)
    assert decode_logs(as_otlp_json(request), JSON) == from_proto
    (row,) = from_proto
    assert (row.service, row.severity, row.body) == ("payment", "ERROR", "payment failed")
    assert row.trace_id == "5b8efff798038103d269b633813fc60c"
    assert row.span_id == "eee19b7ec3c1b174" and row.order_id == ORDER


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xffnot protobuf", PROTOBUF),
        (b"{not json", JSON),
        (b"[1, 2]", JSON),
        (b'{"resourceSpans": "nope"}', JSON),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abc"}]}]}]}', JSON),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "no ids"}]}]}]}', JSON),
        (b"\xff\xfe\x00", JSON),
        (b"[" * 100_000, JSON),
    ],
)
def test_a_body_that_is_not_otlp_is_refused(body: bytes, content_type: str) -> None:
    with pytest.raises(PayloadError) as raised:
        decode_traces(body, content_type)
    assert raised.value.status == 400


def test_an_unknown_content_type_is_refused_with_415() -> None:
    with pytest.raises(UnsupportedMediaType) as raised:
        decode_traces(b"{}", "text/plain")
    assert raised.value.status == 415


def test_gzip_bodies_are_inflated() -> None:
    assert decompress(gzip.compress(b"payload"), "gzip") == b"payload"
    assert decompress(gzip.compress(b"a") + gzip.compress(b"b"), "gzip") == b"ab"
    assert decompress(b"raw", "") == b"raw"


def test_a_zip_bomb_is_refused_without_being_inflated() -> None:
    bomb = gzip.compress(b"\0" * (MAX_PAYLOAD + 1))
    assert len(bomb) < 100_000
    with pytest.raises(PayloadTooLarge):
        decompress(bomb, "gzip")


@pytest.mark.parametrize("body", [b"not gzip at all", gzip.compress(b"x" * 1000, mtime=0)[:-12]])
def test_broken_gzip_is_malformed(body: bytes) -> None:
    with pytest.raises(PayloadError) as raised:
        decompress(body, "gzip")
    assert raised.value.status == 400


def test_an_unknown_content_encoding_is_refused() -> None:
    with pytest.raises(UnsupportedMediaType):
        decompress(b"x", "br")

"""A failed purchase exported to the trace store the way the services export it.

The spans come from the real OpenTelemetry SDK and its OTLP/HTTP exporter (one tracer
provider per service, none installed globally); the log lines are hand-built
``ExportLogsServiceRequest``s, one posted in protobuf and one in gzipped OTLP/JSON. The other
``test_tracestore_*`` integration modules import ``export_failed_purchase`` from here.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

from safiri_tracestore import running_store
from tests.conftest import eventually

pytestmark = pytest.mark.integration

SERVICES = ("gateway", "ticketing", "payment", "mpesa-simulator")
FAILURE = "ResultCode 1037: DS timeout user cannot be reached"


@dataclass(frozen=True)
class Purchase:
    order_id: str
    trace_id: str
    span_names: dict[str, list[str]]  # by service
    log_bodies: list[str]  # in time order


def _export_spans(url: str, order_id: str) -> str:
    """Run in a thread: the SDK exporter blocks while the store (on the loop) answers."""
    providers = {}
    for service in SERVICES:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        # payment's exporter gzips, as OTEL_EXPORTER_OTLP_COMPRESSION=gzip would make it
        compression = Compression.Gzip if service == "payment" else Compression.NoCompression
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers[service] = provider
    gw, tk, pay, sim = (providers[s].get_tracer("safiri") for s in SERVICES)
    order = {"safiri.order.id": order_id}
    with (
        gw.start_as_current_span("POST /api/v1/orders", kind=SpanKind.SERVER) as root,
        gw.start_as_current_span("request_order", attributes=order),
        tk.start_as_current_span("POST /orders", kind=SpanKind.SERVER),
        tk.start_as_current_span("hold_seats", attributes=order),
        tk.start_as_current_span("publish safiri.events", kind=SpanKind.PRODUCER),
    ):
        pass
    with (
        pay.start_as_current_span(
            "process payment.requests", context=set_span_in_context(root), kind=SpanKind.CONSUMER
        ),
        pay.start_as_current_span("request_payment", attributes=order) as request_payment,
        pay.start_as_current_span("provider.stk_push", kind=SpanKind.CLIENT),
        sim.start_as_current_span("POST /mpesa/stkpush/v1/processrequest", kind=SpanKind.SERVER),
        sim.start_as_current_span("mpesa.deliver_callback"),
        pay.start_as_current_span(
            "POST /callbacks/mpesa/{payment_id}", kind=SpanKind.SERVER
        ) as incoming,
        # handled in the purchase's trace (the context stored with the payment), linked to
        # the provider's request that carried the callback
        pay.start_as_current_span(
            "handle_callback",
            context=set_span_in_context(request_payment),
            attributes={**order, "safiri.payment.result_code": 1037},
            links=[Link(incoming.get_span_context())],
        ) as callback,
    ):
        callback.set_status(Status(StatusCode.ERROR, FAILURE))
        with (
            pay.start_as_current_span("publish safiri.events", kind=SpanKind.PRODUCER),
            tk.start_as_current_span("process ticketing.payment-results", kind=SpanKind.CONSUMER),
            tk.start_as_current_span("release_seats", attributes=order),
        ):
            pass
    for provider in providers.values():
        provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def _log(service: str, body: str, t: int, trace_id: str | None, order_id: str) -> ResourceLogs:
    fields = {"order_id": AnyValue(string_value=order_id)}
    if "ResultCode" in body:  # as payment logs it: the code, the masked phone
        fields |= {
            "result_code": AnyValue(int_value=1037),
            "phone": AnyValue(string_value="2547****0037"),
        }
    record = LogRecord(
        time_unix_nano=t,
        severity_text="ERROR" if "failed" in body else "INFO",
        body=AnyValue(string_value=body),
        trace_id=bytes.fromhex(trace_id) if trace_id else b"",
        span_id=bytes.fromhex("00000000000000a1") if trace_id else b"",
        attributes=[KeyValue(key=k, value=v) for k, v in fields.items()],
    )
    resource = ProtoResource(
        attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service))]
    )
    return ResourceLogs(resource=resource, scope_logs=[ScopeLogs(log_records=[record])])


async def _post_logs(url: str, trace_id: str, order_id: str, t0: int) -> list[str]:
    lines = [
        ("gateway", "order accepted", trace_id),
        ("ticketing", "seats held", trace_id),
        ("payment", "payment failed: ResultCode 1037", trace_id),
        ("ticketing", "sweeper saw the order released", None),  # no trace id, only the order
    ]
    logs = [_log(s, b, t0 + i * 1_000_000, t, order_id) for i, (s, b, t) in enumerate(lines)]
    other = _log("gateway", "someone else's order", t0, uuid.uuid4().hex, str(uuid.uuid4()))
    first = ExportLogsServiceRequest(resource_logs=[logs[2], logs[0], other])
    second = json_format.MessageToDict(ExportLogsServiceRequest(resource_logs=logs[1::2]))
    for records in second["resourceLogs"]:  # OTLP/JSON ids are hex
        for record in records["scopeLogs"][0]["logRecords"]:
            for key in ("traceId", "spanId"):
                if key in record:
                    record[key] = base64.b64decode(record[key]).hex()
    async with aiohttp.ClientSession() as http:
        proto = {"Content-Type": "application/x-protobuf"}
        async with http.post(f"{url}/v1/logs", data=first.SerializeToString(), headers=proto) as r:
            assert r.status == 200, await r.text()
        body = gzip.compress(json.dumps(second).encode())
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        async with http.post(f"{url}/v1/logs", data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
    return [body for _, body, _ in lines]


async def export_failed_purchase(url: str) -> Purchase:
    """Export one failed purchase to the store at ``url``; returns what was sent."""
    order_id = str(uuid.uuid4())
    trace_id = await asyncio.to_thread(_export_spans, url, order_id)
    t0 = time.time_ns()
    bodies = await _post_logs(url, trace_id, order_id, t0)
    names = {
        "gateway": ["POST /api/v1/orders", "request_order"],
        "ticketing": ["POST /orders", "hold_seats", "release_seats"],
        "payment": ["request_payment", "provider.stk_push", "handle_callback"],
        "mpesa-simulator": ["POST /mpesa/stkpush/v1/processrequest", "mpesa.deliver_callback"],
    }
    return Purchase(order_id, trace_id, names, bodies)


SOLD_OUT = "SeatsUnavailable: 2 seats asked, 0 free"


def _providers(url: str, *services: str) -> dict[str, TracerProvider]:
    providers = {}
    for service in services:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        providers[service] = provider
    return providers


def _export_refused(url: str) -> str:
    """Seats unavailable as the services export it: ticketing's ``hold_seats`` refused (status
    unset, a ``refused`` event), both servers answered 409 (unset), the gateway's client span
    of that 409 is an error (the HTTP conventions). Returns the trace id."""
    providers = _providers(url, "gateway", "ticketing")
    gw, tk = (providers[s].get_tracer("safiri") for s in ("gateway", "ticketing"))
    trip = {"safiri.trip.id": str(uuid.uuid4()), "safiri.seat_count": 2}
    answered = {"http.response.status_code": 409}
    reason, message = SOLD_OUT.split(": ", 1)
    with (
        gw.start_as_current_span(
            "POST /api/v1/orders", kind=SpanKind.SERVER, attributes=answered
        ) as root,
        gw.start_as_current_span("request_order", attributes=trip),
        gw.start_as_current_span("POST", kind=SpanKind.CLIENT, attributes=answered) as client,
        tk.start_as_current_span("POST /orders", kind=SpanKind.SERVER, attributes=answered),
        tk.start_as_current_span("hold_seats", attributes=trip) as hold,
    ):
        hold.set_attribute("safiri.outcome", "refused")
        hold.add_event(
            "refused", {"safiri.refusal.reason": reason, "safiri.refusal.message": message}
        )
        client.set_status(Status(StatusCode.ERROR))
    for provider in providers.values():
        provider.shutdown()
    return format(root.get_span_context().trace_id, "032x")


def _export_readyz_probe(url: str) -> str:
    """A start-up readiness probe answered 503 (a 5xx server span is an error)."""
    providers = _providers(url, "ticketing")
    tracer = providers["ticketing"].get_tracer("safiri.aiohttp.server")
    attributes = {"http.route": "/readyz", "http.response.status_code": 503}
    with tracer.start_as_current_span(
        "GET /readyz", kind=SpanKind.SERVER, attributes=attributes
    ) as probe:
        probe.set_status(Status(StatusCode.ERROR))
    providers["ticketing"].shutdown()
    return format(probe.get_span_context().trace_id, "032x")


async def export_refused_purchase(url: str) -> str:
    """Export one refused purchase (seats unavailable) to the store; returns its trace id."""
    return await asyncio.to_thread(_export_refused, url)


async def export_readyz_probe(url: str) -> str:
    """Export one failing /readyz probe to the store; returns its trace id."""
    return await asyncio.to_thread(_export_readyz_probe, url)


async def test_the_sdk_exporter_delivers_the_whole_purchase(tmp_path: Path) -> None:
    async with running_store(path=tmp_path / "t.sqlite3") as url, aiohttp.ClientSession() as http:
        purchase = await export_failed_purchase(url)

        async def whole_trace() -> dict[str, object] | None:
            async with http.get(f"{url}/api/traces/{purchase.trace_id}") as response:
                document: dict[str, object] = await response.json()
            return document if len(document["spans"]) == 15 else None  # type: ignore[arg-type]

        document = await eventually(whole_trace, timeout=10, what="15 spans stored")
    services = {s["service"] for s in document["spans"]}  # type: ignore[attr-defined]
    assert services == set(SERVICES)

"""A small OTLP/HTTP trace receiver: the spans the services really exported, kept in memory.

The end-to-end tests assert on it and ``safiri demo`` prints from it. It accepts what the
OpenTelemetry SDK's OTLP/HTTP exporter sends (protobuf ``ExportTraceServiceRequest``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["ReceivedLog", "ReceivedSpan", "SpanStore", "running_receiver"]

MAX_BODY = 8 * 1024 * 1024


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    attributes: dict[str, Any]
    links: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    instance: str | None = None  # the resource's service.instance.id: which replica

    @property
    def is_error(self) -> bool:
        return self.status_code == 2


@dataclass(frozen=True)
class ReceivedLog:
    time_ns: int
    trace_id: str | None
    span_id: str | None
    service: str
    severity: str
    body: str
    attributes: dict[str, Any]


class SpanStore:
    """Spans by trace, in memory, bounded: past ``max_spans`` the oldest traces are dropped."""

    def __init__(self, max_spans: int = 200_000) -> None:
        self.spans: list[ReceivedSpan] = []
        self._by_trace: dict[str, list[ReceivedSpan]] = defaultdict(list)
        self._max_spans = max_spans
        self.logs: list[ReceivedLog] = []
        self.resource_keys: set[str] = set()  # every resource attribute name seen
        # A collector outage, switched by tests: every export is answered 503 and dropped.
        self.unavailable = False
        self.refused_exports = 0
        self.refused_spans: dict[str, set[str]] = defaultdict(set)  # span ids, by service

    def _evict(self) -> None:
        keep = self.spans[len(self.spans) // 5 :]
        dropped = {s.trace_id for s in self.spans[: len(self.spans) // 5]}
        self.spans = [s for s in keep if s.trace_id not in dropped]
        for trace_id in dropped:
            self._by_trace.pop(trace_id, None)

    def add(self, request: ExportTraceServiceRequest) -> int:
        count = 0
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            self.resource_keys.update(resource)
            service = str(resource.get("service.name", "unknown"))
            instance = resource.get("service.instance.id")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    span = ReceivedSpan(
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex() or None,
                        name=s.name,
                        service=service,
                        kind=s.kind,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        status_code=s.status.code,
                        status_message=s.status.message,
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        links=[(ln.trace_id.hex(), ln.span_id.hex()) for ln in s.links],
                        events=[
                            (e.name, {a.key: _value(a.value) for a in e.attributes})
                            for e in s.events
                        ],
                        instance=str(instance) if instance is not None else None,
                    )
                    self.spans.append(span)
                    self._by_trace[span.trace_id].append(span)
                    count += 1
        if len(self.spans) > self._max_spans:
            self._evict()
        return count

    def add_logs(self, request: ExportLogsServiceRequest) -> int:
        count = 0
        for rl in request.resource_logs:
            resource = {a.key: _value(a.value) for a in rl.resource.attributes}
            service = str(resource.get("service.name", "unknown"))
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    self.logs.append(
                        ReceivedLog(
                            time_ns=r.time_unix_nano,
                            trace_id=r.trace_id.hex() or None,
                            span_id=r.span_id.hex() or None,
                            service=service,
                            severity=r.severity_text,
                            body=str(_value(r.body)),
                            attributes={a.key: _value(a.value) for a in r.attributes},
                        )
                    )
                    count += 1
        if len(self.logs) > self._max_spans:
            del self.logs[: len(self.logs) // 5]
        return count

    def logs_of(self, trace_id: str) -> list[ReceivedLog]:
        return sorted((x for x in self.logs if x.trace_id == trace_id), key=lambda x: x.time_ns)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return sorted(self._by_trace.get(trace_id, []), key=lambda s: s.start_ns)

    def never_received(self, service: str) -> set[str]:
        """The ids of ``service``'s spans that were refused and never sent again: dropped."""
        received = {s.span_id for s in self.spans if s.service == service}
        return self.refused_spans[service] - received

    def _refuse_spans(self, request: ExportTraceServiceRequest) -> None:
        for rs in request.resource_spans:
            service = next(
                (str(_value(a.value)) for a in rs.resource.attributes if a.key == "service.name"),
                "unknown",
            )
            for ss in rs.scope_spans:
                self.refused_spans[service].update(s.span_id.hex() for s in ss.spans)

    def trace_of_order(self, order_id: str) -> str | None:
        for span in self.spans:
            if span.attributes.get("safiri.order.id") == order_id:
                return span.trace_id
        return None

    def app(self) -> web.Application:
        def refuse() -> web.Response:
            self.refused_exports += 1
            return web.json_response({"error": "collector unavailable"}, status=503)

        async def export(request: web.Request) -> web.Response:
            body = await request.read()
            message = ExportTraceServiceRequest()
            try:
                message.ParseFromString(body)
            except DecodeError:
                return web.json_response({"error": "not an ExportTraceServiceRequest"}, status=400)
            if self.unavailable:
                self._refuse_spans(message)
                return refuse()
            self.add(message)
            return web.Response(
                body=ExportTraceServiceResponse().SerializeToString(),
                content_type="application/x-protobuf",
            )

        async def export_logs(request: web.Request) -> web.Response:
            if self.unavailable:
                await request.read()
                return refuse()
            message = ExportLogsServiceRequest()
            try:
                message.ParseFromString(await request.read())
            except DecodeError:
                return web.json_response({"error": "not an ExportLogsServiceRequest"}, status=400)
            self.add_logs(message)
            return web.Response(
                body=ExportLogsServiceResponse().SerializeToString(),
                content_type="application/x-protobuf",
            )

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/v1/traces", export)
        app.router.add_post("/v1/logs", export_logs)
        return app


@asynccontextmanager
async def running_receiver(
    host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[SpanStore, str]]:
    """Serve a fresh store; yields it and its base URL (``http://host:port``)."""
    store = SpanStore()
    runner = web.AppRunner(store.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    try:
        yield store, f"http://{host}:{bound}"
    finally:
        await runner.cleanup()

"""OTLP export requests flattened into rows: one per span, one per log record."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from .model import LogRow, SpanRow
from .payload import PayloadError

__all__ = ["any_value", "log_rows", "span_rows"]

_MAX_NS = 2**63 - 1  # SQLite integers are signed 64-bit
_SEVERITIES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    kvs: list[KeyValue] = list(pairs)
    return {kv.key: any_value(kv.value) for kv in kvs}


def _id(raw: bytes, size: int, what: str, *, optional: bool = False) -> str | None:
    if not raw and optional:
        return None
    if len(raw) != size or not any(raw):
        raise PayloadError(f"{what} must be {size} bytes, not all zero")
    return raw.hex()


def _time(value: int, what: str) -> int:
    if value > _MAX_NS:
        raise PayloadError(f"{what} {value} is out of range")
    return value


def _service(resource: Resource) -> tuple[str, dict[str, Any]]:
    attrs = attributes(resource.attributes)
    return str(attrs.get("service.name") or "unknown"), attrs


def span_rows(request: ExportTraceServiceRequest) -> list[SpanRow]:
    """Every span of the request; ``PayloadError`` if any id or timestamp is unusable."""
    rows = []
    for rs in request.resource_spans:
        service, resource = _service(rs.resource)
        for ss in rs.scope_spans:
            for s in ss.spans:
                trace_id = _id(s.trace_id, 16, "traceId")
                rows.append(
                    SpanRow(
                        trace_id=str(trace_id),
                        span_id=str(_id(s.span_id, 8, "spanId")),
                        parent_span_id=_id(s.parent_span_id, 8, "parentSpanId", optional=True),
                        service=service,
                        name=s.name,
                        kind=s.kind,
                        start_ns=_time(s.start_time_unix_nano, "startTimeUnixNano"),
                        end_ns=_time(s.end_time_unix_nano, "endTimeUnixNano"),
                        status_code=s.status.code,
                        status_message=s.status.message,
                        attributes=attributes(s.attributes),
                        events=[
                            {
                                "name": e.name,
                                "time_ns": _time(e.time_unix_nano, "event timeUnixNano"),
                                "attributes": attributes(e.attributes),
                            }
                            for e in s.events
                        ],
                        links=[
                            {
                                "trace_id": _id(ln.trace_id, 16, "link traceId"),
                                "span_id": _id(ln.span_id, 8, "link spanId"),
                                "attributes": attributes(ln.attributes),
                            }
                            for ln in s.links
                        ],
                        resource=resource,
                    )
                )
    return rows


def _severity(number: int, text: str) -> str:
    if text:
        return text
    return _SEVERITIES[(number - 1) // 4] if 1 <= number <= 24 else "UNSPECIFIED"


def _body(value: AnyValue) -> str:
    body = any_value(value)
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body, default=str)


def log_rows(request: ExportLogsServiceRequest) -> list[LogRow]:
    """Every log record of the request; ``PayloadError`` if an id or timestamp is unusable."""
    rows = []
    for rl in request.resource_logs:
        service, _ = _service(rl.resource)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                rows.append(
                    LogRow(
                        time_ns=_time(
                            r.time_unix_nano or r.observed_time_unix_nano, "timeUnixNano"
                        ),
                        trace_id=_id(r.trace_id, 16, "traceId", optional=True),
                        span_id=_id(r.span_id, 8, "spanId", optional=True),
                        service=service,
                        severity=_severity(r.severity_number, r.severity_text),
                        body=_body(r.body),
                        attributes=attributes(r.attributes),
                    )
                )
    return rows

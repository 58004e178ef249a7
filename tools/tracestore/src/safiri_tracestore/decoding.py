"""An OTLP/HTTP body (protobuf or JSON) into rows, or a ``PayloadError`` saying why not."""

from __future__ import annotations

import json
from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .model import LogRow, SpanRow
from .otlp_json import parse_otlp_json
from .payload import PayloadError, UnsupportedMediaType
from .rows import log_rows, span_rows

__all__ = ["JSON", "PROTOBUF", "decode_logs", "decode_traces"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

M = TypeVar("M", bound=Message)


def _parse(body: bytes, content_type: str, message: M) -> M:
    name = type(message).__name__
    if content_type == PROTOBUF:
        try:
            message.ParseFromString(body)
        except (DecodeError, RecursionError):
            raise PayloadError(f"body is not a protobuf {name}") from None
        return message
    if content_type == JSON:
        try:
            return parse_otlp_json(json.loads(body), message)
        except (ValueError, RecursionError) as exc:
            raise PayloadError(f"body is not an OTLP/JSON {name}: {exc}") from None
    raise UnsupportedMediaType(f"Content-Type must be {PROTOBUF} or {JSON}, not {content_type!r}")


def decode_traces(body: bytes, content_type: str) -> list[SpanRow]:
    return span_rows(_parse(body, content_type, ExportTraceServiceRequest()))


def decode_logs(body: bytes, content_type: str) -> list[LogRow]:
    return log_rows(_parse(body, content_type, ExportLogsServiceRequest()))

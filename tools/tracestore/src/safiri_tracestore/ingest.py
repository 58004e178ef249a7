"""``POST /v1/traces`` and ``POST /v1/logs``: OTLP/HTTP in protobuf or JSON, optionally gzip."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from loguru import logger
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from .decoding import PROTOBUF, decode_logs, decode_traces
from .model import LogRow, SpanRow
from .payload import PayloadError, decompress, read_body
from .repository import TraceRepository

__all__ = ["ingest_routes"]

Rows = tuple[Sequence[SpanRow], Sequence[LogRow]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _traces(body: bytes, content_type: str) -> Rows:
    return decode_traces(body, content_type), ()


def _logs(body: bytes, content_type: str) -> Rows:
    return (), decode_logs(body, content_type)


def ingest_routes(repository: TraceRepository) -> list[web.RouteDef]:
    def receiver(decode: Callable[[bytes, str], Rows], empty: bytes) -> Handler:
        async def receive(request: web.Request) -> web.StreamResponse:
            encoding = request.headers.get("Content-Encoding", "")
            content_type = request.content_type

            def rows(raw: bytes) -> Rows:
                return decode(decompress(raw, encoding), content_type)

            try:
                # Inflating and parsing up to 8 MiB takes a while: off the loop, like the writes.
                spans, logs = await asyncio.to_thread(rows, await read_body(request))
            except PayloadError as exc:
                return web.json_response({"error": str(exc)}, status=exc.status)
            try:
                await repository.add(spans, logs)
            except sqlite3.Error as exc:
                logger.bind(error=str(exc)).error("trace store could not write; exporter may retry")
                return web.json_response({"error": "store unavailable"}, status=503)
            if content_type == PROTOBUF:
                return web.Response(body=empty, content_type=PROTOBUF)
            return web.json_response({})

        return receive

    return [
        web.post("/v1/traces", receiver(_traces, ExportTraceServiceResponse().SerializeToString())),
        web.post("/v1/logs", receiver(_logs, ExportLogsServiceResponse().SerializeToString())),
    ]

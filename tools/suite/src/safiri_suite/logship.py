"""The services' log lines, collected outside them: each process's JSON log file tailed and sent
over OTLP/HTTP as log records, as the collector's ``filelog`` receiver does in compose.

A service that exports its own log records over OTLP builds an SDK log record per line on its
event loop and encodes it in its own process: about 8 % of the services' CPU per purchase
(bench/results/log_export_ab.json). Each line is already on stdout as JSON with its trace and
span ids, so the suite runs the services with ``OTEL_LOGS_EXPORTER=none`` and this shipper
reads the lines from the files the supervisor writes them to. The records are the ones the
services' own export made (``safiri_telemetry._otlp_logs.OtlpLogSink``): body the message,
the line's bound fields as attributes (already redacted), ``logger``, the
``exception.*`` attributes, severity from the level, trace and span ids; the access line
("request handled", which the request's server span already holds) and OpenTelemetry's own
lines are left out, as there. A line that is not JSON (a crash's traceback on stderr) is a
record with that line as its body and no trace.

Files are read from where the last read stopped, never from a pipe: a slow or busy supervisor
never blocks a service's writes. Sending is best effort, like the SDK's: a batch the endpoint
refuses is dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

__all__ = ["LogShipper", "record_of", "resource_attributes"]

ACCESS_LOGGER = "safiri_telemetry._aiohttp"
OWN_LOGGERS = ("opentelemetry",)
_ACCESS_MARK = f'"logger": "{ACCESS_LOGGER}"'
# SeverityNumber as the services' exporter mapped loguru's levels.
SEVERITY = {
    "TRACE": 1,
    "DEBUG": 5,
    "INFO": 9,
    "SUCCESS": 10,
    "WARNING": 13,
    "ERROR": 17,
    "CRITICAL": 21,
}
_LINE_FIELDS = ("timestamp", "level", "service", "message", "logger", "trace_id", "span_id")
POLL_SECONDS = 0.25
STOP_TIMEOUT_SECONDS = 3.0
MAX_BATCH = 512


def _any(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    return AnyValue(string_value=json.dumps(value, default=str))


def _key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any(v)) for k, v in attributes.items() if v is not None]


def record_of(line: str) -> LogRecord | None:
    """The OTLP log record one log line stands for; None for a line the services' own export
    left out (the access line, OpenTelemetry's own) or a blank one."""
    line = line.strip()
    if not line or _ACCESS_MARK in line:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "message" not in doc:
        return LogRecord(body=AnyValue(string_value=line))
    origin = str(doc.get("logger") or "")
    if origin == ACCESS_LOGGER or origin.startswith(OWN_LOGGERS):
        return None
    attributes = {k: v for k, v in doc.items() if k not in _LINE_FIELDS and k != "exception"}
    attributes["logger"] = origin
    exception = doc.get("exception")
    if isinstance(exception, dict):
        attributes["exception.type"] = exception.get("type")
        attributes["exception.message"] = exception.get("message")
        attributes["exception.stacktrace"] = exception.get("stacktrace")
    level = str(doc.get("level") or "")
    record = LogRecord(
        severity_number=SEVERITY.get(level, 9),  # type: ignore[arg-type]
        severity_text=level,
        body=AnyValue(string_value=str(doc["message"])),
        attributes=_key_values(attributes),
    )
    with contextlib.suppress(KeyError, ValueError, TypeError):
        at = int(datetime.fromisoformat(doc["timestamp"]).timestamp() * 1e9)
        record.time_unix_nano = record.observed_time_unix_nano = at
    with contextlib.suppress(KeyError, ValueError, TypeError):
        record.trace_id = bytes.fromhex(doc["trace_id"])
        record.span_id = bytes.fromhex(doc["span_id"])
        record.flags = 1  # sampled: the services trace every purchase
    return record


def resource_attributes(env: Mapping[str, str]) -> dict[str, str]:
    """The resource a process's own export would have named: ``OTEL_RESOURCE_ATTRIBUTES``,
    then ``OTEL_SERVICE_NAME`` as ``service.name``."""
    attributes: dict[str, str] = {}
    for pair in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            attributes[key.strip()] = value.strip()
    if env.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = env["OTEL_SERVICE_NAME"]
    return attributes


@dataclass
class _Tail:
    path: Path
    resource: dict[str, str]
    offset: int = 0
    partial: bytes = b""
    pending: list[LogRecord] = field(default_factory=list)


class LogShipper:
    """Tails each registered log file and POSTs its records to ``endpoint``/v1/logs."""

    def __init__(self, endpoint: str, *, poll_seconds: float = POLL_SECONDS) -> None:
        self._url = endpoint.rstrip("/") + "/v1/logs"
        self._poll = poll_seconds
        self._tails: dict[str, _Tail] = {}
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.shipped = 0
        self.dropped = 0

    def follow(self, name: str, path: Path, env: Mapping[str, str]) -> None:
        """Ship what ``path`` gains from now on (a restarted process appends to the same file:
        its tail goes on from where it was)."""
        tail = self._tails.get(name)
        if tail is None:
            size = path.stat().st_size if path.exists() else 0
            self._tails[name] = _Tail(path, resource_attributes(env), offset=size)
        else:
            tail.resource = resource_attributes(env)

    def start(self) -> None:
        if self._task is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.ship()
            await asyncio.sleep(self._poll)

    def _read(self, tail: _Tail) -> None:
        try:
            with tail.path.open("rb") as f:
                f.seek(tail.offset)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        tail.offset += len(data)
        lines = (tail.partial + data).split(b"\n")
        tail.partial = lines.pop()  # the line being written, if any
        for raw in lines:
            record = record_of(raw.decode("utf-8", errors="replace"))
            if record is not None:
                tail.pending.append(record)

    async def ship(self) -> None:
        """Read every file to its end and send what it held (called on a timer and at stop)."""
        for tail in self._tails.values():
            self._read(tail)
        for tail in self._tails.values():
            while tail.pending:
                batch, tail.pending = tail.pending[:MAX_BATCH], tail.pending[MAX_BATCH:]
                await self._send(tail.resource, batch)

    async def _send(self, resource: Mapping[str, str], records: list[LogRecord]) -> None:
        request = ExportLogsServiceRequest(
            resource_logs=[
                ResourceLogs(
                    resource=Resource(attributes=_key_values(resource)),
                    scope_logs=[
                        ScopeLogs(scope=InstrumentationScope(name="safiri"), log_records=records)
                    ],
                )
            ]
        )
        assert self._http is not None
        try:
            async with self._http.post(
                self._url,
                data=request.SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            ) as response:
                ok = response.status < 300
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            self.shipped += len(records)
        else:
            self.dropped += len(records)

    async def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Ship what is left (within ``timeout``: an unreachable endpoint never holds a stop),
        then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.ship()
        if self._http is not None:
            await self._http.close()
            self._http = None

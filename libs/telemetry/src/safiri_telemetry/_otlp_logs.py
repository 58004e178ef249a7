"""Log records exported over OTLP as well as printed, so each trace carries its log lines.

A loguru sink turns each record into an OpenTelemetry log record in the active span's context
(so it has the trace and span ids), with the bound fields, redacted, as attributes. Records go
through a bounded batch queue; the exporter's own complaints are not fed back into it.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from ._config import TelemetryConfig
from ._exporters import log_exporters
from ._redaction import redact_mapping

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["OtlpLogSink", "build_logger_provider", "exported_over_otlp"]

_SEVERITY = {
    "TRACE": SeverityNumber.TRACE,
    "DEBUG": SeverityNumber.DEBUG,
    "INFO": SeverityNumber.INFO,
    "SUCCESS": SeverityNumber.INFO2,
    "WARNING": SeverityNumber.WARN,
    "ERROR": SeverityNumber.ERROR,
    "CRITICAL": SeverityNumber.FATAL,
}
_OWN_LOGGERS = ("opentelemetry",)
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
)


def build_logger_provider(resource: Resource, config: TelemetryConfig) -> LoggerProvider | None:
    """A provider exporting to each exporter ``OTEL_LOGS_EXPORTER`` names, through the SDK's
    batch processor; ``None`` when it names none."""
    exporters = log_exporters(config)
    if not exporters:
        return None
    provider = LoggerProvider(resource=resource)
    for exporter in exporters:
        provider.add_log_record_processor(
            BatchLogRecordProcessor(exporter, max_queue_size=4096, schedule_delay_millis=1000)
        )
    # When the endpoint is down the span exporter already reports it (rate-limited); the log
    # exporter would repeat it for every batch.
    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return provider


# The per-request access line ("request handled") says what the request's server span already
# holds (method, route, status, duration); it stays on stdout but is not exported a second time.
_ACCESS_LOGGER = "safiri_telemetry._aiohttp"


def exported_over_otlp(record: Record) -> bool:
    return record["name"] != _ACCESS_LOGGER


def _attribute(value: Any) -> Any:
    if isinstance(value, str | bool | int | float):
        return value
    return json.dumps(value, default=str)


class OtlpLogSink:
    def __init__(self, provider: LoggerProvider) -> None:
        self._logger = provider.get_logger("safiri")

    def __call__(self, message: Message) -> None:
        record = message.record
        origin = str(record["extra"].get("logger") or record["name"] or "")
        if origin.startswith(_OWN_LOGGERS):
            return
        extra = {k: v for k, v in record["extra"].items() if k not in ("trace_id", "span_id")}
        attributes = {k: _attribute(v) for k, v in redact_mapping(extra).items()}
        attributes["logger"] = origin
        exception = record["exception"]
        if exception is not None and exception.value is not None:
            # The semantic conventions' exception attributes (the SDK's own ``exception=``
            # argument is newer than the oldest SDK this library supports).
            error = exception.value
            attributes["exception.type"] = type(error).__qualname__
            attributes["exception.message"] = str(error)
            attributes["exception.stacktrace"] = "".join(
                traceback.format_exception(type(error), error, exception.traceback)
            )
        self._logger.emit(
            timestamp=int(record["time"].timestamp() * 1e9),
            severity_number=_SEVERITY.get(record["level"].name, SeverityNumber.INFO),
            severity_text=record["level"].name,
            body=record["message"],
            attributes=attributes,
            context=otel_context.get_current(),
        )

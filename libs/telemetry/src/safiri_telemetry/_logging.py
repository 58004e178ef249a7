"""loguru configured as one JSON object per line on stdout, with the active trace's ids."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger
from opentelemetry import trace

from ._redaction import redact_mapping

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["configure_logging"]


def _trace_ids() -> tuple[str | None, str | None]:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _add_trace_ids(record: Record) -> None:
    extra = record["extra"]
    if "trace_id" not in extra:
        trace_id, span_id = _trace_ids()
        if trace_id is not None:
            extra["trace_id"] = trace_id
            extra["span_id"] = span_id


def _render(record: Record, service: str) -> str:
    doc: dict[str, Any] = {
        "timestamp": record["time"].isoformat(),
        "level": record["level"].name,
        "service": service,
        "message": record["message"],
        "logger": record["name"],
    }
    doc.update(redact_mapping(record["extra"]))
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        doc["exception"] = {
            "type": exc.type.__name__,
            "message": str(exc.value),
            "stacktrace": "".join(traceback.format_exception(exc.type, exc.value, exc.traceback)),
        }
    # The standard library's spacing (", ", ": ") and ASCII escapes are the line's format, which
    # people and tests match on (orjson writes it compact: bench/results/levers.md section 8).
    return json.dumps(doc, default=str)


class _JsonSink:
    def __init__(self, stream: TextIO, service: str) -> None:
        self._stream = stream
        self._service = service

    def __call__(self, message: Message) -> None:
        self._stream.write(_render(message.record, self._service) + "\n")
        self._stream.flush()


class _InterceptHandler(logging.Handler):
    """Routes standard-library records (aiohttp, aio-pika, asyncpg, OTel) into loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).bind(logger=record.name).log(
            level, record.getMessage()
        )


def configure_logging(service: str, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log line, loguru's and the standard library's, to ``stream`` as JSON."""
    logger.remove()
    logger.configure(patcher=_add_trace_ids)
    logger.add(_JsonSink(stream or sys.stdout, service), level=level, enqueue=False)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

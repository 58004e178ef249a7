"""safiri_suite.logship: a service's printed JSON lines, shipped from outside it, are the OTLP log
records the service's own export made of the same calls: same body, severity, attributes, trace
and span ids; the lines the export leaves out (the access line, OpenTelemetry's own) left out too.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from loguru import logger
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider

from safiri_suite.logship import record_of, resource_attributes
from safiri_telemetry._logging import configure_logging
from safiri_telemetry._otlp_logs import OtlpLogSink, exported_over_otlp

pytestmark = pytest.mark.unit


@pytest.fixture
def both_paths() -> Iterator[tuple[io.StringIO, InMemoryLogRecordExporter]]:
    """loguru as a service has it with its own export on: JSON lines on a stream AND the SDK's
    log records (the same filter as Telemetry.setup)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    configure_logging("ticketing", "INFO", stream)
    sink = logger.add(OtlpLogSink(provider), level="INFO", filter=exported_over_otlp)
    try:
        yield stream, exporter
    finally:
        logger.remove(sink)
        logger.remove()
        root.handlers[:] = handlers
        root.setLevel(level)


def _attributes(attrs: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in attrs}


def test_shipped_records_are_the_records_the_service_exported(
    both_paths: tuple[io.StringIO, InMemoryLogRecordExporter],
) -> None:
    stream, exporter = both_paths
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("hold_seats"):
        logger.bind(order_id="o-1", seats=[3, 4], amount=1500, paid=False).info("seats held")
        try:
            raise TimeoutError("provider did not answer in 30 s")
        except TimeoutError:
            logger.bind(order_id="o-1").exception("stk push failed")
        # The access line: the request's server span holds it; printed, never exported.
        logger.patch(lambda r: r.update(name="safiri_telemetry._aiohttp")).info("request handled")
        logging.getLogger("opentelemetry.sdk").warning("exporter complained")
    logger.warning("outside any trace")

    exported = [r.log_record for r in exporter.get_finished_logs()]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5  # all printed
    shipped = [r for r in (record_of(line) for line in lines) if r is not None]
    assert [r.body.string_value for r in shipped] == [
        "seats held",
        "stk push failed",
        "outside any trace",
    ]
    assert len(shipped) == len(exported) == 3
    for ours, theirs in zip(shipped, exported, strict=True):
        assert ours.body.string_value == theirs.body
        assert ours.severity_text == theirs.severity_text
        assert ours.severity_number == theirs.severity_number.value
        assert _attributes(ours.attributes) == dict(theirs.attributes or {})
        assert int.from_bytes(ours.trace_id or bytes(16), "big") == theirs.trace_id
        assert int.from_bytes(ours.span_id or bytes(8), "big") == theirs.span_id
        assert ours.time_unix_nano > 0
    assert shipped[0].trace_id != bytes(16) and not shipped[2].trace_id
    assert _attributes(shipped[1].attributes)["exception.type"] == "TimeoutError"


def test_a_line_that_is_not_json_is_kept_as_its_body_and_blank_lines_are_not() -> None:
    record = record_of("Traceback (most recent call last):")
    assert record is not None
    assert record.body.string_value == "Traceback (most recent call last):"
    assert not record.trace_id
    assert record_of("   ") is None


def test_the_resource_is_what_the_process_would_have_named() -> None:
    env = {
        "OTEL_SERVICE_NAME": "payment",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=compose,"
        "service.instance.id=payment-1, service.name=ignored",
    }
    assert resource_attributes(env) == {
        "deployment.environment.name": "compose",
        "service.instance.id": "payment-1",
        "service.name": "payment",
    }

"""What Telemetry.setup's options promise, each shown: logging left alone when asked,
/metrics not served with OTEL_METRICS_EXPORTER=none, an exception's attributes on an exported
log record, and SAFIRI_LOG_LEVEL refused by name by the services (not read by the library)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from loguru import logger
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_telemetry import ConfigError, Telemetry
from safiri_telemetry._otlp_logs import OtlpLogSink
from safiri_web import log_level
from tests.conftest import serving

pytestmark = pytest.mark.unit


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger's handlers, put back afterwards whatever the test did to them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield root
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _setup(**options: object) -> Telemetry:
    return Telemetry.setup(
        "options-svc",
        install_global=False,
        span_processor=SimpleSpanProcessor(InMemorySpanExporter()),
        **options,  # type: ignore[arg-type]
    )


def test_configure_logs_false_leaves_logging_alone(root_logging: logging.Logger) -> None:
    mine = logging.StreamHandler(io.StringIO())
    root_logging.handlers[:] = [mine]
    _setup(configure_logs=False)
    assert root_logging.handlers == [mine]  # no basicConfig(force=True)

    _setup(log_stream=io.StringIO())  # the default: the root logger is routed into loguru
    assert root_logging.handlers != [mine]


@pytest.mark.parametrize(("exporter", "served"), [("prometheus", 200), ("none", 404)])
async def test_metrics_are_served_unless_the_metrics_exporter_is_none(
    exporter: str, served: int
) -> None:
    import aiohttp

    telemetry = _setup(env={"OTEL_METRICS_EXPORTER": exporter}, log_stream=io.StringIO())
    async with (
        serving(telemetry.instrument(web.Application())) as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}/metrics") as response,
    ):
        assert response.status == served


def test_an_exported_log_record_carries_its_exception() -> None:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    sink = logger.add(OtlpLogSink(provider), level="INFO")
    try:
        try:
            raise TimeoutError("provider did not answer in 30 s")
        except TimeoutError:
            logger.exception("stk push failed")
    finally:
        logger.remove(sink)
    [record] = [r.log_record for r in exporter.get_finished_logs()]
    attributes = dict(record.attributes or {})
    assert record.body == "stk push failed"
    assert attributes["exception.type"] == "TimeoutError"
    assert attributes["exception.message"] == "provider did not answer in 30 s"
    assert "raise TimeoutError" in str(attributes["exception.stacktrace"])


def test_the_services_read_the_log_level_and_refuse_a_bad_one_by_name() -> None:
    assert log_level({}) == "INFO"
    assert log_level({"SAFIRI_LOG_LEVEL": "debug"}) == "DEBUG"
    with pytest.raises(ConfigError, match="SAFIRI_LOG_LEVEL='LOUD'"):
        log_level({"SAFIRI_LOG_LEVEL": "LOUD"})


async def test_a_line_logged_after_shutdown_never_reenters_the_log_exporter(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Shutdown takes the OTLP log sink off loguru before it shuts the provider: a line logged
    afterwards (a service's last words) stays JSON on stdout, with no loguru re-entry error."""
    stream = io.StringIO()

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(content_type="application/x-protobuf")

    collector = web.Application()
    collector.router.add_post("/v1/{signal}", accept)
    # A collector that answers: the export thread ends at shutdown instead of retrying an
    # endpoint nobody listens on after the test (tests/unit/conftest.py).
    async with serving(collector) as endpoint:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
        telemetry = Telemetry.setup(
            "svc", install_global=False, env=env, export_logs=True, log_stream=stream
        )
        await telemetry.shutdown()
    logger.info("stopped")
    assert "Logging error in Loguru" not in capfd.readouterr().err
    assert json.loads(stream.getvalue().splitlines()[-1])["message"] == "stopped"

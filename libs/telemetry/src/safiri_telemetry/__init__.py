"""Safiri's observability library: one call wires traces, metrics and JSON logs.

telemetry = Telemetry.setup("ticketing", service_version="0.1.0")
app = telemetry.instrument(web.Application())  # middleware, GET /metrics, shutdown on cleanup
...
with publish_span("", "bookings", message_id, headers):  # a PRODUCER span; context in headers
    await channel.default_exchange.publish(Message(body, headers=headers, ...), "bookings")
with consume_span("bookings", message.routing_key, message.message_id, message.headers):
    ...  # a CONSUMER span in the producer's trace: handle the message here
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TextIO

from aiohttp import ClientSession, web
from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from ._aiohttp import client_session as _client_session
from ._aiohttp import metrics_handler as _metrics_handler
from ._aiohttp import route_template, server_middleware
from ._config import LOG_LEVELS, BatchSettings, ConfigError, TelemetryConfig
from ._export import SHUTDOWN_TIMEOUT_SECONDS, DroppedSpans, bounded
from ._logging import configure_logging
from ._messaging import DEFAULT_EXCHANGE, consume_span, publish_span
from ._metrics import LATENCY_BUCKETS, HttpMetrics
from ._otlp_logs import OtlpLogSink, build_logger_provider, exported_over_otlp
from ._pool import ConnectionPool, ConnectionPoolCollector
from ._redaction import mask_phone, redact_mapping
from ._sentry import ErrorMonitoring
from ._tracing import (
    build_tracer_provider,
    business_span,
    context_from_carrier,
    current_trace_id,
    http_step,
    inject_carrier,
    outside_http_step,
)

__all__ = [
    "DEFAULT_EXCHANGE",
    "LATENCY_BUCKETS",
    "LOG_LEVELS",
    "BatchSettings",
    "ConfigError",
    "ConnectionPool",
    "ConnectionPoolCollector",
    "DroppedSpans",
    "HttpMetrics",
    "Telemetry",
    "TelemetryConfig",
    "business_span",
    "consume_span",
    "context_from_carrier",
    "current_trace_id",
    "http_step",
    "inject_carrier",
    "mask_phone",
    "outside_http_step",
    "publish_span",
    "redact_mapping",
    "route_template",
]


class Telemetry:
    """Everything observable about one service: its tracer provider, registry and log sink."""

    def __init__(
        self,
        config: TelemetryConfig,
        registry: CollectorRegistry,
        provider: TracerProvider | None,
        *,
        dropped_spans: DroppedSpans | None = None,
        logger_provider: LoggerProvider | None = None,
    ) -> None:
        self.config = config
        self._logger_provider = logger_provider
        self._log_sink: int | None = None  # the loguru sink feeding it (``setup`` adds one)
        self.errors: ErrorMonitoring | None = None  # Sentry, when SENTRY_DSN is set
        self.registry = registry
        self.http = HttpMetrics(registry)
        # CPU, memory and file descriptors of the process, as on the default registry.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.dropped_spans = dropped_spans or DroppedSpans(
            registry, destination=config.traces_endpoint
        )
        self._provider = provider
        self.middleware = server_middleware(self.http)
        self.metrics_handler = _metrics_handler(registry)

    @classmethod
    def setup(
        cls,
        service_name: str,
        *,
        service_version: str = "0.1.0",
        log_level: str = "INFO",
        env: Mapping[str, str] | None = None,
        span_processor: SpanProcessor | None = None,
        log_stream: TextIO | None = None,
        install_global: bool = True,
        export_logs: bool | None = None,
        configure_logs: bool = True,
    ) -> Telemetry:
        """Configure tracing, metrics and logging from the standard ``OTEL_*`` variables,
        and error monitoring from Sentry's standard ``SENTRY_DSN``, ``SENTRY_ENVIRONMENT``
        and ``SENTRY_RELEASE`` (``env``, else the process environment); no other variable is
        read.

        Raises ``ConfigError`` naming the variable when a value is unusable.
        Log records are exported too as ``OTEL_LOGS_EXPORTER`` says (OTLP by default);
        ``export_logs`` overrides that (by default, only when spans are exported for real).

        What this changes in the process, all of it here:

        - with ``install_global`` (the default), the global tracer provider is this one;
        - with ``configure_logs`` (the default), loguru's handlers are replaced by one JSON
          sink on ``log_stream`` (stdout) at ``log_level`` that adds the trace's ids, the
          standard library's root logger is routed into it (``logging.basicConfig(force=
          True)``), and the ``aiormq`` and ``aio_pika`` loggers are raised to WARNING;
        - when log records are exported, a loguru sink is added for them;
        - the OTLP exporters' own loggers are quietened: their per-batch failures are
          counted and reported once per interval instead (``telemetry_export_failures_total``);
        - with ``SENTRY_DSN`` set, the Sentry client is started (``_sentry``): two loguru sinks
          (ERROR lines as events, lower ones as breadcrumbs) and sentry-sdk's aiohttp
          integration; OpenTelemetry keeps the tracing (no Sentry tracing, no propagation).
        """
        config = TelemetryConfig.from_env(service_name, service_version, env, log_level=log_level)
        if configure_logs:
            configure_logging(config.service_name, config.log_level, log_stream)
        registry = CollectorRegistry()
        dropped = DroppedSpans(registry, destination=config.traces_endpoint)
        provider: TracerProvider | None = None
        if not config.sdk_disabled:
            provider = build_tracer_provider(config, span_processor, dropped=dropped)
            if install_global:
                trace.set_tracer_provider(provider)
        logger_provider: LoggerProvider | None = None
        if export_logs is None:
            export_logs = span_processor is None
        if export_logs and provider is not None:
            logger_provider = build_logger_provider(provider.resource, config)
        log_sink: int | None = None
        if logger_provider is not None:
            log_sink = logger.add(
                OtlpLogSink(logger_provider),
                level=config.log_level,
                enqueue=False,
                filter=exported_over_otlp,
            )
        logger.bind(
            otel_sdk_disabled=config.sdk_disabled,
            traces_exporters=list(config.traces_exporters),
            traces_endpoint=config.traces_endpoint,
            span_queue=config.batch.max_queue_size,
        ).info("telemetry configured")
        telemetry = cls(
            config, registry, provider, dropped_spans=dropped, logger_provider=logger_provider
        )
        telemetry._log_sink = log_sink
        telemetry.errors = ErrorMonitoring.start(config)
        return telemetry

    @property
    def tracer_provider(self) -> TracerProvider | None:
        """This service's provider (``None`` when ``OTEL_SDK_DISABLED=true``).

        With ``install_global=False`` take tracers from it, not from ``opentelemetry.trace``.
        """
        return self._provider

    def instrument(
        self, app: web.Application, *, metrics_path: str = "/metrics"
    ) -> web.Application:
        """Observe ``app``; returns it.

        Puts ``middleware`` first (its span and timing cover the other middlewares), serves
        ``metrics_handler`` on ``GET metrics_path``, and calls ``shutdown()`` on the app's
        cleanup, so the spans still queued are exported when the service stops. Resources
        closed by a ``cleanup_ctx`` or by ``on_cleanup`` callbacks added before this one are
        closed before that.
        """
        app.middlewares.insert(0, self.middleware)
        if self.errors is not None:  # inside the server span: its trace_id on the event
            app.middlewares.insert(1, self.errors.middleware)
            app.on_startup.append(self.errors.on_startup)
        if "prometheus" in self.config.metrics_exporters:  # not with OTEL_METRICS_EXPORTER=none
            app.router.add_get(metrics_path, self.metrics_handler)
        app.on_cleanup.append(self._shutdown_on_cleanup)
        return app

    async def _shutdown_on_cleanup(self, app: web.Application) -> None:
        await self.shutdown()

    def client_session(self, **kwargs: object) -> ClientSession:
        """An aiohttp ``ClientSession`` whose calls are traced and measured."""
        return _client_session(self.http, self.config.semconv_http, **kwargs)

    async def shutdown(self) -> None:
        """Export the spans still queued and stop the exporter.

        Returns within a few seconds even when the collector is down or slow: spans that
        could not be exported by then are dropped, counted and reported.
        """
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)
        if self._log_sink is not None:
            # Off loguru first: a line logged after the provider is shut would make the SDK
            # log "Shutdown called, ignoring Log." from inside this sink, a re-entry loguru
            # refuses (a non-JSON error on stderr) or, across threads, waits on for ever.
            logger.remove(self._log_sink)
            self._log_sink = None
        if self._logger_provider is not None:
            # Bounded like the spans': the SDK exports every queued batch, each for the whole
            # export timeout, so a collector that is down held the process past its grace.
            await asyncio.to_thread(
                bounded, self._logger_provider.shutdown, SHUTDOWN_TIMEOUT_SECONDS
            )
        if self.errors is not None:
            await self.errors.close()
            self.errors = None

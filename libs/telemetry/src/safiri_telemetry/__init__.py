"""Safiri's observability library: one call wires traces, metrics and JSON logs.

telemetry = Telemetry.setup("ticketing", service_version="0.1.0")
app = web.Application(middlewares=[telemetry.middleware])
app.router.add_get("/metrics", telemetry.metrics_handler)
...
await telemetry.shutdown()
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TextIO

from aiohttp import ClientSession
from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from prometheus_client import CollectorRegistry

from ._aiohttp import client_session as _client_session
from ._aiohttp import metrics_handler as _metrics_handler
from ._aiohttp import route_template, server_middleware
from ._config import ConfigError, TelemetryConfig
from ._logging import configure_logging
from ._messaging import consume_span, publish_span
from ._metrics import LATENCY_BUCKETS, HttpMetrics
from ._redaction import mask_phone, redact_mapping
from ._tracing import (
    build_tracer_provider,
    business_span,
    context_from_carrier,
    current_trace_id,
    inject_carrier,
)

__all__ = [
    "LATENCY_BUCKETS",
    "ConfigError",
    "Telemetry",
    "TelemetryConfig",
    "business_span",
    "consume_span",
    "context_from_carrier",
    "current_trace_id",
    "inject_carrier",
    "mask_phone",
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
    ) -> None:
        self.config = config
        self.registry = registry
        self.http = HttpMetrics(registry)
        self._provider = provider
        self.middleware = server_middleware(self.http)
        self.metrics_handler = _metrics_handler(registry)

    @classmethod
    def setup(
        cls,
        service_name: str,
        *,
        service_version: str = "0.1.0",
        env: Mapping[str, str] | None = None,
        span_processor: SpanProcessor | None = None,
        log_stream: TextIO | None = None,
        install_global: bool = True,
    ) -> Telemetry:
        """Configure tracing, metrics and logging from the ``OTEL_*`` variables.

        Raises ``ConfigError`` naming the variable when a value is unusable.
        ``install_global=False`` leaves the process-wide tracer provider alone (tests).
        """
        config = TelemetryConfig.from_env(service_name, service_version, env)
        configure_logging(config.service_name, config.log_level, log_stream)
        provider: TracerProvider | None = None
        if not config.sdk_disabled:
            provider = build_tracer_provider(config, span_processor)
            if install_global:
                trace.set_tracer_provider(provider)
        logger.bind(
            otel_sdk_disabled=config.sdk_disabled, traces_endpoint=config.traces_endpoint
        ).info("telemetry configured")
        return cls(config, CollectorRegistry(), provider)

    def client_session(self, **kwargs: object) -> ClientSession:
        """An aiohttp ``ClientSession`` whose calls are traced and measured."""
        return _client_session(self.http, **kwargs)

    async def shutdown(self) -> None:
        """Flush pending spans (bounded) and stop the exporter."""
        if self._provider is not None:
            provider = self._provider
            await asyncio.to_thread(provider.force_flush, 5000)
            await asyncio.to_thread(provider.shutdown)

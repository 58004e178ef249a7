"""The stock exporters ``OTEL_{TRACES,LOGS}_EXPORTER`` name, found the way the SDK finds them.

Each exporter package registers its classes under the ``opentelemetry_<signal>_exporter`` entry
points (``otlp_proto_http``, ``otlp_proto_grpc``, ``console``); the SDK's own auto-configuration
looks them up there, and so does this. OTLP exporters get their endpoint, headers, compression
and timeout from ``TelemetryConfig`` (so ``setup(env=...)`` is honoured); the certificate
variables are left to the exporter, which reads them from the process environment.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from ._config import ConfigError, OtlpSettings, TelemetryConfig

__all__ = ["log_exporters", "span_exporters"]

_ENTRY_POINT = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_PACKAGE = {
    "http/protobuf": "opentelemetry-exporter-otlp-proto-http",
    "grpc": "opentelemetry-exporter-otlp-proto-grpc (pip install 'safiri-telemetry[grpc]')",
}


def _exporter_class(signal: str, name: str, protocol: str) -> Any:
    entry = _ENTRY_POINT[protocol] if name == "otlp" else name
    found = entry_points(group=f"opentelemetry_{signal}_exporter", name=entry)
    if not found:
        variable = f"OTEL_{signal.upper()}_EXPORTER={name}"
        needs = _PACKAGE[protocol] if name == "otlp" else "opentelemetry-sdk"
        raise ConfigError(f"{variable} over {protocol} needs {needs}, which is not installed")
    return next(iter(found)).load()


def _compression(settings: OtlpSettings) -> Any:
    if settings.compression is None:
        return None
    if settings.protocol == "grpc":
        import grpc  # type: ignore[import-untyped]

        return grpc.Compression.Gzip
    from opentelemetry.exporter.otlp.proto.http import Compression

    return Compression.Gzip


def _build(
    signal: str, names: tuple[str, ...], settings: OtlpSettings, timeout: float
) -> list[Any]:
    exporters = []
    for name in names:
        cls = _exporter_class(signal, name, settings.protocol)
        if name == "otlp":
            exporters.append(
                cls(
                    endpoint=settings.endpoint,
                    headers=settings.headers or None,
                    timeout=timeout,
                    compression=_compression(settings),
                )
            )
        else:
            exporters.append(cls())
    return exporters


def span_exporters(config: TelemetryConfig) -> list[Any]:
    """One ``SpanExporter`` per name in ``OTEL_TRACES_EXPORTER`` (none for ``none``)."""
    timeout = config.batch.export_timeout_millis / 1000
    return _build("traces", config.traces_exporters, config.traces_otlp, timeout)


def log_exporters(config: TelemetryConfig) -> list[Any]:
    """One ``LogExporter`` per name in ``OTEL_LOGS_EXPORTER`` (none for ``none``)."""
    timeout = config.batch.export_timeout_millis / 1000
    return _build("logs", config.logs_exporters, config.logs_otlp, timeout)

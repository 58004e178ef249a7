"""Strict parsing of the standard ``OTEL_*`` variables that Safiri interprets itself."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["BatchSettings", "ConfigError", "TelemetryConfig"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration variable holds a value that cannot be used; the message names it."""


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL such as http://127.0.0.1:4318")
    return raw.rstrip("/")


def _attributes(env: Mapping[str, str], name: str) -> dict[str, str]:
    raw = env.get(name, "").strip()
    out: dict[str, str] = {}
    if not raw:
        return out
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name} item {item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def _positive_int(env: Mapping[str, str], name: str, default: int, unit: str) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or int(value) <= 0:
        raise ConfigError(f"{name}={raw!r} is not a positive whole number of {unit}")
    return int(value)


@dataclass(frozen=True)
class BatchSettings:
    """The bounds of the span export queue, from the standard ``OTEL_BSP_*`` variables.

    Two defaults differ from the specification's: spans leave every second (not 5 s) so a
    trace is complete moments after the request, and one export, retries included, gives up
    after 5 s (not 30 s) so an unreachable collector never holds the export thread for long.
    """

    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    schedule_delay_millis: int = 1000
    export_timeout_millis: int = 5000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BatchSettings:
        defaults = cls()
        queue = _positive_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", defaults.max_queue_size, "spans")
        batch = _positive_int(
            env,
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            min(defaults.max_export_batch_size, queue),
            "spans",
        )
        if batch > queue:
            raise ConfigError(
                f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch} is larger than the queue"
                f" (OTEL_BSP_MAX_QUEUE_SIZE={queue})"
            )
        return cls(
            max_queue_size=queue,
            max_export_batch_size=batch,
            schedule_delay_millis=_positive_int(
                env, "OTEL_BSP_SCHEDULE_DELAY", defaults.schedule_delay_millis, "milliseconds"
            ),
            export_timeout_millis=_positive_int(
                env, "OTEL_BSP_EXPORT_TIMEOUT", defaults.export_timeout_millis, "milliseconds"
            ),
        )


# OTEL_TRACES_SAMPLER values the SDK knows (the specification's, less the Jaeger/X-Ray ones).
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def _sampler(env: Mapping[str, str]) -> tuple[str, float]:
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name not in SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER={name!r} is not one of {', '.join(SAMPLERS)}")
    text = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if not name.endswith("traceidratio") or not text:
        return name, 1.0
    try:
        ratio = float(text)
    except ValueError:
        ratio = math.nan
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(
            f"OTEL_TRACES_SAMPLER_ARG={text!r} is not a ratio between 0 and 1 (for {name})"
        )
    return name, ratio


@dataclass(frozen=True)
class TelemetryConfig:
    """What the standard variables say, read once at start-up."""

    service_name: str
    service_version: str
    service_namespace: str = "safiri"
    environment: str = "local"
    sdk_disabled: bool = False
    traces_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    resource_attributes: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    batch: BatchSettings = field(default_factory=BatchSettings)
    # Log records also go to the OTLP endpoint (OTEL_LOGS_EXPORTER=otlp, the default) so a
    # trace store or collector holds each trace's log lines; "none" keeps them on stdout only.
    logs_endpoint: str | None = "http://127.0.0.1:4318/v1/logs"
    # OTEL_TRACES_SAMPLER and, for the ratio samplers, OTEL_TRACES_SAMPLER_ARG.
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0

    @classmethod
    def from_env(
        cls,
        default_service_name: str,
        service_version: str,
        env: Mapping[str, str] | None = None,
    ) -> TelemetryConfig:
        env = os.environ if env is None else env
        attrs = _attributes(env, "OTEL_RESOURCE_ATTRIBUTES")
        name = env.get("OTEL_SERVICE_NAME", "").strip() or default_service_name
        base = _url(env, "OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        traces_endpoint = (
            _url(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "") if traces else f"{base}/v1/traces"
        )
        logs_exporter = env.get("OTEL_LOGS_EXPORTER", "otlp").strip().lower() or "otlp"
        if logs_exporter not in {"otlp", "none"}:
            raise ConfigError(f"OTEL_LOGS_EXPORTER={logs_exporter!r} is not otlp or none")
        logs = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip()
        logs_endpoint = (
            _url(env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "") if logs else f"{base}/v1/logs"
        )
        level = env.get("SAFIRI_LOG_LEVEL", "INFO").strip().upper()
        if level not in {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"SAFIRI_LOG_LEVEL={level!r} is not a log level such as INFO")
        sampler, ratio = _sampler(env)
        return cls(
            sampler=sampler,
            sampler_ratio=ratio,
            service_name=name,
            service_version=attrs.pop("service.version", service_version),
            service_namespace=attrs.pop("service.namespace", "safiri"),
            environment=attrs.pop("deployment.environment.name", "local"),
            sdk_disabled=_bool(env, "OTEL_SDK_DISABLED", False),
            traces_endpoint=traces_endpoint,
            resource_attributes=attrs,
            log_level=level,
            batch=BatchSettings.from_env(env),
            logs_endpoint=logs_endpoint if logs_exporter == "otlp" else None,
        )

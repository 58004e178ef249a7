"""Strict parsing of the standard ``OTEL_*`` variables that Safiri interprets itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["ConfigError", "TelemetryConfig"]

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
        level = env.get("SAFIRI_LOG_LEVEL", "INFO").strip().upper()
        if level not in {"TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"SAFIRI_LOG_LEVEL={level!r} is not a log level such as INFO")
        return cls(
            service_name=name,
            service_version=attrs.pop("service.version", service_version),
            service_namespace=attrs.pop("service.namespace", "safiri"),
            environment=attrs.pop("deployment.environment.name", "local"),
            sdk_disabled=_bool(env, "OTEL_SDK_DISABLED", False),
            traces_endpoint=traces_endpoint,
            resource_attributes=attrs,
            log_level=level,
        )

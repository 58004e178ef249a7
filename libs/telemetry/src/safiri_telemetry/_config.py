"""The standard ``OTEL_*`` variables, read once and parsed as the specification says.

https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/ and the OTLP
exporter's https://opentelemetry.io/docs/specs/otel/protocol/exporter/. Where a value cannot be
used, ``ConfigError`` names the variable; booleans follow the specification exactly (only
``true``, in any case, is true; anything else is false, with a warning unless it is ``false``
or empty). The library reads no variable of its own; besides ``OTEL_*`` it reads only Sentry's
standard ``SENTRY_DSN``, ``SENTRY_ENVIRONMENT`` and ``SENTRY_RELEASE`` (error monitoring).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from opentelemetry.util.re import parse_env_headers

__all__ = [
    "LOG_LEVELS",
    "BatchSettings",
    "ConfigError",
    "OtlpSettings",
    "SentrySettings",
    "TelemetryConfig",
]

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL")
PROTOCOLS = ("http/protobuf", "grpc")
_DEFAULT_BASE = {"http/protobuf": "http://127.0.0.1:4318", "grpc": "http://127.0.0.1:4317"}
_PATHS = {"traces": "/v1/traces", "logs": "/v1/logs"}
EXPORTERS = {
    "traces": ("otlp", "console", "none"),
    "logs": ("otlp", "console", "none"),
    # Metrics are pulled by Prometheus from GET /metrics (prometheus-client): nothing pushes them.
    "metrics": ("prometheus", "none"),
}
_DEFAULT_EXPORTER = {"traces": "otlp", "logs": "otlp", "metrics": "prometheus"}


class ConfigError(ValueError):
    """One or more configuration variables hold values that cannot be used; the message names
    each with its reason.

    The one configuration-error type of Safiri: ``safiri_web``'s readers of the ``SAFIRI_*``
    variables raise it too.
    """


def _bool(env: Mapping[str, str], name: str) -> bool:
    """The specification's boolean: ``true`` (any case) is true, everything else false."""
    raw = env.get(name)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value == "true":
        return True
    if value not in ("false", ""):
        warnings.warn(
            f"{name}={raw!r} is not true or false; read as false, as the specification says",
            stacklevel=3,
        )
    return False


def _get(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """The first of ``names`` that is set to something, with its value."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def _url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL such as http://127.0.0.1:4318")
    return raw


def _attributes(env: Mapping[str, str], name: str) -> dict[str, str]:
    """``key=value,...`` with percent-encoded values (W3C Baggage octets), decoded."""
    raw = env.get(name, "").strip()
    out: dict[str, str] = {}
    if not raw:
        return out
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name} item {item!r} is not key=value")
        out[key.strip()] = unquote(value.strip())
    return out


def _positive_int(env: Mapping[str, str], name: str, default: int, unit: str) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip()
    if not (value.isascii() and value.isdigit()) or int(value) <= 0:
        raise ConfigError(f"{name}={raw!r} is not a positive whole number of {unit}")
    return int(value)


def _exporters(env: Mapping[str, str], signal: str) -> tuple[str, ...]:
    """``OTEL_<SIGNAL>_EXPORTER``: a comma-separated list; ``none`` alone means no exporter."""
    name = f"OTEL_{signal.upper()}_EXPORTER"
    raw = env.get(name, "").strip().lower() or _DEFAULT_EXPORTER[signal]
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    allowed = EXPORTERS[signal]
    for n in names:
        if n not in allowed:
            why = " (metrics are pulled by Prometheus from /metrics)" if signal == "metrics" else ""
            raise ConfigError(f"{name}={raw!r}: {n!r} is not one of {', '.join(allowed)}{why}")
    if "none" in names and len(names) > 1:
        raise ConfigError(f"{name}={raw!r}: none cannot be combined with an exporter")
    return () if names == ("none",) else names


@dataclass(frozen=True)
class OtlpSettings:
    """Where and how one signal is exported over OTLP (``OTEL_EXPORTER_OTLP_*``, with the
    per-signal form of each variable taking precedence)."""

    endpoint: str
    protocol: str = "http/protobuf"
    headers: dict[str, str] = field(default_factory=dict)
    compression: str | None = None  # gzip, or none

    @classmethod
    def from_env(cls, env: Mapping[str, str], signal: str) -> OtlpSettings:
        own = f"OTEL_EXPORTER_OTLP_{signal.upper()}_"
        protocol_var = _get(env, own + "PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
        protocol = protocol_var[1].lower() if protocol_var else "http/protobuf"
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"{protocol_var[0] if protocol_var else ''}={protocol!r} is not one of"
                f" {', '.join(PROTOCOLS)} (http/json has no Python exporter)"
            )
        endpoint_var = _get(env, own + "ENDPOINT")
        if endpoint_var is not None:
            endpoint = _url(*endpoint_var)  # the signal's own URL, used as it is
        else:
            base_var = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
            base = _url(*base_var) if base_var else _DEFAULT_BASE[protocol]
            # Over HTTP the signal's path is added to the base; gRPC takes the base as it is.
            path = _PATHS[signal] if protocol == "http/protobuf" else ""
            endpoint = base.rstrip("/") + path
        headers_var = _get(env, own + "HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
        headers = dict(parse_env_headers(headers_var[1], liberal=True)) if headers_var else {}
        compression_var = _get(env, own + "COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION")
        compression = None
        if compression_var is not None:
            compression = compression_var[1].lower()
            if compression not in ("gzip", "none"):
                raise ConfigError(f"{compression_var[0]}={compression!r} is not gzip or none")
        return cls(endpoint, protocol, headers, None if compression == "none" else compression)


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


def _hide_key(dsn: str) -> str:
    """A DSN as it may be shown: its key (the URL's user part) replaced by ``***``."""
    scheme, sep, rest = dsn.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return dsn


@dataclass(frozen=True)
class SentrySettings:
    """Error monitoring (``_sentry``), on when ``SENTRY_DSN`` is set: the variables Sentry's
    own SDKs read, so a Sentry or GlitchTip DSN is given as their documentation says.

    ``environment`` and ``release`` are ``None`` when unset: the service's
    ``deployment.environment.name`` and ``<service>@<version>`` are used then.
    """

    dsn: str = field(repr=False)
    environment: str | None = None
    release: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SentrySettings | None:
        dsn = env.get("SENTRY_DSN", "").strip()
        if not dsn:
            return None
        try:
            from sentry_sdk.utils import Dsn
        except ImportError:
            raise ConfigError(
                "SENTRY_DSN is set but sentry-sdk is not installed: install"
                " safiri-telemetry[sentry], or unset SENTRY_DSN"
            ) from None
        try:
            Dsn(dsn)  # BadDsn (a ValueError) names what is wrong; so does a bad port
        except ValueError as exc:
            raise ConfigError(
                f"SENTRY_DSN={_hide_key(dsn)!r} is not a Sentry DSN ({exc}); one looks like"
                " https://<key>@<host>/<project id>"
            ) from None
        return cls(
            dsn,
            env.get("SENTRY_ENVIRONMENT", "").strip() or None,
            env.get("SENTRY_RELEASE", "").strip() or None,
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


def _semconv_http(env: Mapping[str, str]) -> str:
    """``OTEL_SEMCONV_STABILITY_OPT_IN``, a list over several domains: ``http/dup`` asks for
    the old HTTP attributes beside the stable ones; anything else leaves the stable ones."""
    chosen = {v.strip().lower() for v in env.get("OTEL_SEMCONV_STABILITY_OPT_IN", "").split(",")}
    return "http/dup" if "http/dup" in chosen else "http"


@dataclass(frozen=True)
class TelemetryConfig:
    """What the standard variables say, read once at start-up."""

    service_name: str
    service_version: str
    service_namespace: str = "safiri"
    environment: str = "local"
    sdk_disabled: bool = False
    resource_attributes: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    batch: BatchSettings = field(default_factory=BatchSettings)
    traces_exporters: tuple[str, ...] = ("otlp",)
    logs_exporters: tuple[str, ...] = ("otlp",)
    metrics_exporters: tuple[str, ...] = ("prometheus",)
    traces_otlp: OtlpSettings = field(
        default_factory=lambda: OtlpSettings("http://127.0.0.1:4318/v1/traces")
    )
    logs_otlp: OtlpSettings = field(
        default_factory=lambda: OtlpSettings("http://127.0.0.1:4318/v1/logs")
    )
    # OTEL_TRACES_SAMPLER and, for the ratio samplers, OTEL_TRACES_SAMPLER_ARG.
    sampler: str = "parentbased_always_on"
    sampler_ratio: float = 1.0
    # OTEL_SEMCONV_STABILITY_OPT_IN for HTTP client spans: "http" (the stable conventions,
    # this library's default: the old ones are deprecated) or "http/dup" (both).
    semconv_http: str = "http"
    # SENTRY_DSN, SENTRY_ENVIRONMENT, SENTRY_RELEASE: None when SENTRY_DSN is unset.
    sentry: SentrySettings | None = None

    @property
    def traces_endpoint(self) -> str:
        """Where spans go over OTLP ("" when no OTLP exporter is configured for traces)."""
        return self.traces_otlp.endpoint if "otlp" in self.traces_exporters else ""

    @property
    def logs_endpoint(self) -> str | None:
        """Where log records go over OTLP (``None`` when no OTLP exporter is configured)."""
        return self.logs_otlp.endpoint if "otlp" in self.logs_exporters else None

    @classmethod
    def from_env(
        cls,
        default_service_name: str,
        service_version: str,
        env: Mapping[str, str] | None = None,
        *,
        log_level: str = "INFO",
    ) -> TelemetryConfig:
        env = os.environ if env is None else env
        attrs = _attributes(env, "OTEL_RESOURCE_ATTRIBUTES")
        name = env.get("OTEL_SERVICE_NAME", "").strip() or default_service_name
        level = log_level.strip().upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"log level {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        sampler, ratio = _sampler(env)
        traces = _exporters(env, "traces")
        logs = _exporters(env, "logs")
        return cls(
            sampler=sampler,
            sampler_ratio=ratio,
            service_name=name,
            service_version=attrs.pop("service.version", service_version),
            service_namespace=attrs.pop("service.namespace", "safiri"),
            environment=attrs.pop("deployment.environment.name", "local"),
            sdk_disabled=_bool(env, "OTEL_SDK_DISABLED"),
            resource_attributes=attrs,
            log_level=level,
            batch=BatchSettings.from_env(env),
            traces_exporters=traces,
            logs_exporters=logs,
            metrics_exporters=_exporters(env, "metrics"),
            traces_otlp=OtlpSettings.from_env(env, "traces"),
            logs_otlp=OtlpSettings.from_env(env, "logs"),
            semconv_http=_semconv_http(env),
            sentry=SentrySettings.from_env(env),
        )

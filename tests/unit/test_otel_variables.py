"""Every ``OTEL_*`` variable libs/telemetry understands, one row each, read as the
specification says (https://opentelemetry.io/docs/specs/otel/configuration/
sdk-environment-variables/ and the OTLP exporter's page), plus the exporters they choose."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from safiri_telemetry import ConfigError, TelemetryConfig
from safiri_telemetry._exporters import log_exporters, span_exporters
from safiri_telemetry._tracing import build_resource

pytestmark = pytest.mark.unit

Read = Callable[[TelemetryConfig], Any]

ROWS: list[tuple[str, dict[str, str], Read, Any]] = [
    ("OTEL_SERVICE_NAME", {"OTEL_SERVICE_NAME": "payment"}, lambda c: c.service_name, "payment"),
    (
        "OTEL_RESOURCE_ATTRIBUTES, values percent-decoded",
        {"OTEL_RESOURCE_ATTRIBUTES": "team=rails%20ops,region=ke%2Cnairobi,k8s.pod.name=p-1"},
        lambda c: c.resource_attributes,
        {"team": "rails ops", "region": "ke,nairobi", "k8s.pod.name": "p-1"},
    ),
    (
        "OTEL_RESOURCE_ATTRIBUTES, the service's own keys",
        {"OTEL_RESOURCE_ATTRIBUTES": "service.version=2.0,deployment.environment.name=stag%20ing"},
        lambda c: (c.service_version, c.environment),
        ("2.0", "stag ing"),
    ),
    ("OTEL_SDK_DISABLED=true", {"OTEL_SDK_DISABLED": "true"}, lambda c: c.sdk_disabled, True),
    ("OTEL_SDK_DISABLED=TRUE", {"OTEL_SDK_DISABLED": "TRUE"}, lambda c: c.sdk_disabled, True),
    ("OTEL_SDK_DISABLED=false", {"OTEL_SDK_DISABLED": "false"}, lambda c: c.sdk_disabled, False),
    ("OTEL_SDK_DISABLED unset", {}, lambda c: c.sdk_disabled, False),
    (
        "OTEL_TRACES_EXPORTER=console",
        {"OTEL_TRACES_EXPORTER": "console"},
        lambda c: (c.traces_exporters, c.traces_endpoint),
        (("console",), ""),
    ),
    (
        "OTEL_TRACES_EXPORTER=otlp,console",
        {"OTEL_TRACES_EXPORTER": "otlp, console"},
        lambda c: c.traces_exporters,
        ("otlp", "console"),
    ),
    (
        "OTEL_TRACES_EXPORTER=none",
        {"OTEL_TRACES_EXPORTER": "none"},
        lambda c: c.traces_exporters,
        (),
    ),
    (
        "OTEL_LOGS_EXPORTER=none",
        {"OTEL_LOGS_EXPORTER": "none"},
        lambda c: (c.logs_exporters, c.logs_endpoint),
        ((), None),
    ),
    (
        "OTEL_LOGS_EXPORTER=console",
        {"OTEL_LOGS_EXPORTER": "console"},
        lambda c: c.logs_exporters,
        ("console",),
    ),
    ("OTEL_METRICS_EXPORTER unset", {}, lambda c: c.metrics_exporters, ("prometheus",)),
    (
        "OTEL_METRICS_EXPORTER=none",
        {"OTEL_METRICS_EXPORTER": "none"},
        lambda c: c.metrics_exporters,
        (),
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT (a base: each signal's path added)",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
        lambda c: (c.traces_endpoint, c.logs_endpoint),
        ("http://collector:4318/v1/traces", "http://collector:4318/v1/logs"),
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as it is)",
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example:443/ingest",
        },
        lambda c: (c.traces_endpoint, c.logs_endpoint),
        ("https://traces.example:443/ingest", "http://collector:4318/v1/logs"),
    ),
    (
        "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT (used as it is)",
        {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://loki:3100/otlp/v1/logs"},
        lambda c: c.logs_endpoint,
        "http://loki:3100/otlp/v1/logs",
    ),
    (
        "OTEL_EXPORTER_OTLP_PROTOCOL=grpc (the gRPC port, no path)",
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        lambda c: (c.traces_otlp.protocol, c.traces_endpoint, c.logs_endpoint),
        ("grpc", "http://127.0.0.1:4317", "http://127.0.0.1:4317"),
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL over the general one",
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
        },
        lambda c: (c.traces_otlp.protocol, c.logs_otlp.protocol),
        ("grpc", "http/protobuf"),
    ),
    (
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL over the general one",
        {
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
        },
        lambda c: (c.traces_otlp.protocol, c.logs_endpoint),
        ("grpc", "http://127.0.0.1:4318/v1/logs"),
    ),
    (
        "OTEL_EXPORTER_OTLP_HEADERS, percent-decoded",
        {"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cr%20t,tenant=safiri"},
        lambda c: (c.traces_otlp.headers, c.logs_otlp.headers),
        ({"api-key": "s3cr t", "tenant": "safiri"},) * 2,
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS over the general one",
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2"},
        lambda c: (c.traces_otlp.headers, c.logs_otlp.headers),
        ({"b": "2"}, {"a": "1"}),
    ),
    (
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS over the general one",
        {"OTEL_EXPORTER_OTLP_HEADERS": "a=1", "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "c=3"},
        lambda c: c.logs_otlp.headers,
        {"c": "3"},
    ),
    (
        "OTEL_EXPORTER_OTLP_COMPRESSION",
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"},
        lambda c: (c.traces_otlp.compression, c.logs_otlp.compression),
        ("gzip", "gzip"),
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION over the general one",
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "none"},
        lambda c: (c.traces_otlp.compression, c.logs_otlp.compression),
        (None, "gzip"),
    ),
    (
        "OTEL_BSP_MAX_QUEUE_SIZE",
        {"OTEL_BSP_MAX_QUEUE_SIZE": "100"},
        lambda c: c.batch.max_queue_size,
        100,
    ),
    (
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64"},
        lambda c: c.batch.max_export_batch_size,
        64,
    ),
    (
        "OTEL_BSP_SCHEDULE_DELAY",
        {"OTEL_BSP_SCHEDULE_DELAY": "250"},
        lambda c: c.batch.schedule_delay_millis,
        250,
    ),
    (
        "OTEL_BSP_EXPORT_TIMEOUT",
        {"OTEL_BSP_EXPORT_TIMEOUT": "900"},
        lambda c: c.batch.export_timeout_millis,
        900,
    ),
    (
        "OTEL_TRACES_SAMPLER",
        {"OTEL_TRACES_SAMPLER": "always_off"},
        lambda c: c.sampler,
        "always_off",
    ),
    ("OTEL_SEMCONV_STABILITY_OPT_IN unset: stable", {}, lambda c: c.semconv_http, "http"),
    (
        "OTEL_SEMCONV_STABILITY_OPT_IN=http/dup",
        {"OTEL_SEMCONV_STABILITY_OPT_IN": "database,http/dup"},
        lambda c: c.semconv_http,
        "http/dup",
    ),
    (
        "OTEL_TRACES_SAMPLER_ARG",
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"},
        lambda c: c.sampler_ratio,
        0.25,
    ),
]


@pytest.mark.parametrize(
    ("env", "read", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_each_variable_is_read_as_specified(env: dict[str, str], read: Read, expected: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none of these is worth a warning
        assert read(TelemetryConfig.from_env("svc", "1.0", env)) == expected


@pytest.mark.parametrize("value", ["1", "yes", "on", "enabled"])
def test_a_boolean_other_than_true_is_false_with_a_warning(value: str) -> None:
    """The specification: only "true" is true; any other value but "false" or empty is false
    and SHOULD be warned about (Safiri once read OTEL_SDK_DISABLED=1 as true)."""
    with pytest.warns(UserWarning, match="OTEL_SDK_DISABLED"):
        config = TelemetryConfig.from_env("svc", "1.0", {"OTEL_SDK_DISABLED": value})
    assert config.sdk_disabled is False


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_TRACES_EXPORTER": "none,otlp"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_LOGS_EXPORTER": "loki"}, "OTEL_LOGS_EXPORTER"),
        ({"OTEL_METRICS_EXPORTER": "otlp"}, "OTEL_METRICS_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "thrift"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
        ({"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "loki:3100"}, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY"),
    ],
)
def test_an_unusable_value_is_refused_by_name(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        TelemetryConfig.from_env("svc", "1.0", env)


@pytest.mark.parametrize(
    ("env", "span_types", "log_types"),
    [
        ({}, [OTLPSpanExporter], ["OTLPLogExporter"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_LOGS_EXPORTER": "console"},
            [OTLPSpanExporter, ConsoleSpanExporter],
            ["ConsoleLog"],  # ConsoleLogExporter, ConsoleLogRecordExporter since 1.40
        ),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, [GrpcSpanExporter], ["OTLPLogExporter"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}, [], []),
    ],
)
def test_the_named_exporters_are_the_stock_ones(
    env: dict[str, str], span_types: list[type], log_types: list[str]
) -> None:
    config = TelemetryConfig.from_env("svc", "1.0", env)
    assert [type(e) for e in span_exporters(config)] == span_types
    logs = log_exporters(config)
    assert len(logs) == len(log_types)
    assert all(type(e).__name__.startswith(n) for e, n in zip(logs, log_types, strict=True))
    assert all(type(e).__module__.startswith("opentelemetry.") for e in logs)


def test_the_resource_carries_the_decoded_attributes() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=gateway%2D1,team=rails%20ops"}
    resource = build_resource(TelemetryConfig.from_env("svc", "1.0", env))
    assert resource.attributes["service.instance.id"] == "gateway-1"
    assert resource.attributes["team"] == "rails ops"


def test_the_log_level_is_an_argument_not_a_variable() -> None:
    config = TelemetryConfig.from_env("svc", "1.0", {"SAFIRI_LOG_LEVEL": "ERROR"})
    assert config.log_level == "INFO"  # the library reads no variable of the project's
    assert TelemetryConfig.from_env("svc", "1.0", {}, log_level="debug").log_level == "DEBUG"
    with pytest.raises(ConfigError, match="LOUD"):
        TelemetryConfig.from_env("svc", "1.0", {}, log_level="LOUD")

"""Tracer provider set-up and the small API business code uses to add spans."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, sampling
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry

from ._config import TelemetryConfig
from ._export import BoundedBatchSpanProcessor, DroppedSpans
from ._exporters import span_exporters
from ._redaction import mask_phone, redact_value

__all__ = [
    "HTTP_STEP",
    "build_tracer_provider",
    "business_span",
    "context_from_carrier",
    "current_trace_id",
    "http_step",
    "inject_carrier",
    "outside_http_step",
]

_TRACER_NAME = "safiri"
# A proxy: it follows the global provider once one is set, and keeps the SDK's tracer after
# that (asking the SDK for a tracer on every span costs as much as the span itself).
_TRACER = trace.get_tracer(_TRACER_NAME)


def build_resource(config: TelemetryConfig) -> Resource:
    attrs: dict[str, str] = {
        "service.name": config.service_name,
        "service.version": config.service_version,
        "service.namespace": config.service_namespace,
        "deployment.environment.name": config.environment,
        # Tells replicas apart; OTEL_RESOURCE_ATTRIBUTES names it (a pod's name, `safiri up`'s
        # gateway-1) where something stabler than a random id per process exists.
        "service.instance.id": str(uuid.uuid4()),
    }
    attrs.update(config.resource_attributes)
    return Resource.create(attrs)


def build_sampler(config: TelemetryConfig) -> sampling.Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` names, from the variables given to ``setup``."""
    ratio = config.sampler_ratio
    root: sampling.Sampler = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
    }.get(config.sampler.removeprefix("parentbased_"), sampling.ALWAYS_ON)
    return sampling.ParentBased(root) if config.sampler.startswith("parentbased_") else root


def build_tracer_provider(
    config: TelemetryConfig,
    processor: SpanProcessor | None = None,
    *,
    dropped: DroppedSpans | None = None,
) -> TracerProvider:
    """A provider exporting through ``processor``, or else to each exporter that
    ``OTEL_TRACES_EXPORTER`` names (the stock OTLP exporter by default) through a bounded
    queue. Spans that cannot be exported are counted in ``dropped``. An OTLP exporter's
    ``timeout`` bounds one export including its retries (``OTEL_BSP_EXPORT_TIMEOUT``).
    """
    provider = TracerProvider(resource=build_resource(config), sampler=build_sampler(config))
    if processor is not None:
        provider.add_span_processor(processor)
        return provider
    if dropped is None:
        dropped = DroppedSpans(CollectorRegistry(), destination=config.traces_endpoint)
    for exporter in span_exporters(config):
        provider.add_span_processor(BoundedBatchSpanProcessor(exporter, config.batch, dropped))
    return provider


def current_trace_id() -> str | None:
    """The 32-hex id of the active trace, or ``None`` outside a recorded span."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def inject_carrier(carrier: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the active context (W3C ``traceparent``/``tracestate``) into ``carrier``."""
    carrier = {} if carrier is None else carrier
    propagate.inject(carrier)
    return carrier


def context_from_carrier(carrier: Mapping[str, Any] | None) -> otel_context.Context:
    """The context stored in ``carrier`` (message headers, an outbox row), or an empty one."""
    clean = {k: str(v) for k, v in (carrier or {}).items() if isinstance(v, str | bytes)}
    return propagate.extract(clean)


@contextmanager
def _detaching(token: Token[otel_context.Context] | None) -> Iterator[None]:
    """Detach ``token`` (from ``otel_context.attach``) when the block ends, if there is one."""
    try:
        yield
    finally:
        if token is not None:
            otel_context.detach(token)


def _recording_possible() -> bool:
    """False when no SDK is behind the tracer (``OTEL_SDK_DISABLED=true``): skip the work."""
    return not isinstance(
        trace.get_tracer_provider(), trace.NoOpTracerProvider | trace.ProxyTracerProvider
    )


@contextmanager
def business_span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    links: list[Link] | None = None,
    refusals: tuple[type[BaseException], ...] = (),
) -> Iterator[Span]:
    """A span around one business step (``hold_seats``, ``request_payment``).

    Attributes are redacted like log fields; an exception marks the span as an error,
    is recorded on it, and propagates. An exception of ``refusals`` (the step's business
    answers, such as seats sold out) is not an error: the span's status stays unset, it gets
    ``safiri.outcome=refused`` and a ``refused`` event with the reason, and it propagates.
    """
    clean = (
        {k: redact_value(k, v) for k, v in attributes.items() if v is not None}
        if attributes and _recording_possible()
        else None
    )
    # A resumed context (request headers, an outbox row, a message) is made current for the
    # step, not only its span: its W3C baggage (the gateway's client) then reaches whatever
    # the step sends on. The SDK alone would parent the span and drop the baggage.
    resumed = otel_context.attach(parent) if parent is not None else None
    # Given at the start, the attributes are checked in one go instead of one call, one lock
    # and one check each (span_cost.py: ~3 µs a span less with five attributes).
    with (
        _detaching(resumed),
        _TRACER.start_as_current_span(
            name,
            context=parent,
            kind=kind,
            attributes=clean,
            links=links,
            record_exception=False,
            set_status_on_exception=False,
        ) as span,
    ):
        try:
            yield span
        except refusals as exc:
            span.set_attribute("safiri.outcome", "refused")
            span.add_event(
                "refused",
                {
                    "safiri.refusal.reason": type(exc).__name__,
                    "safiri.refusal.message": mask_phone(str(exc)),
                },
            )
            raise
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise


# The open http_step, for the client session's hooks: {"span": Span, "taken": bool}.
HTTP_STEP = otel_context.create_key("safiri-http-step")


@contextmanager
def http_step(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    refusals: tuple[type[BaseException], ...] = (),
) -> Iterator[Span]:
    """A business step that is one HTTP call (``request_order``, ``provider.stk_push``): ONE
    span, of kind ``CLIENT``, instead of the step's span with the instrumentation's client span
    inside it saying the same thing again.

    The first call made inside it through ``Telemetry.client_session()`` opens no span of its
    own: the step's span gets the call's attributes (``http.request.method``, ``url.full``
    without its query, ``server.address``, ``server.port``, ``http.response.status_code``,
    ``error.type`` for a 5xx answer or a failed call), and its context is what the request
    carries, so the server's span is the step's child (and a service graph pairs the two as
    client and server). Any further call in the step keeps its own client span. Otherwise as
    ``business_span``.
    """
    with business_span(name, attributes, kind=SpanKind.CLIENT, refusals=refusals) as span:
        token = otel_context.attach(
            otel_context.set_value(HTTP_STEP, {"span": span, "taken": False})
        )
        try:
            yield span
        finally:
            otel_context.detach(token)


@contextmanager
def outside_http_step() -> Iterator[None]:
    """Calls made inside are not the open ``http_step``'s call: each keeps its own client span
    (the step's child), and the step's call is the first one after. For what a step fetches on
    the way to its call: the provider's OAuth token before an STK push."""
    token = otel_context.attach(otel_context.set_value(HTTP_STEP, None))
    try:
        yield
    finally:
        otel_context.detach(token)

"""aiohttp server middleware and client sessions that carry the trace and record RED metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from aiohttp import (
    ClientSession,
    TraceConfig,
    TraceRequestEndParams,
    TraceRequestExceptionParams,
    TraceRequestStartParams,
    web,
)
from loguru import logger
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

if TYPE_CHECKING:
    from types import SimpleNamespace

    from yarl import URL

    from ._metrics import HttpMetrics

__all__ = ["client_session", "metrics_handler", "server_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
UNMATCHED_ROUTE = "unmatched"


def route_template(request: web.Request) -> str:
    """The route as declared (``/api/v1/orders/{order_id}``), never the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


def _exemplar() -> dict[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid and ctx.trace_flags.sampled:
        return {"trace_id": format(ctx.trace_id, "032x")}
    return None


def server_middleware(metrics: HttpMetrics) -> Callable[..., Awaitable[web.StreamResponse]]:
    tracer = trace.get_tracer("safiri.aiohttp.server")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_template(request)
        parent = propagate.extract(request.headers)
        # The request's context is made current, its baggage with it (see business_span).
        resumed = otel_context.attach(parent)
        try:
            return await _serve(request, handler, route, parent)
        finally:
            otel_context.detach(resumed)

    async def _serve(
        request: web.Request, handler: Handler, route: str, parent: otel_context.Context
    ) -> web.StreamResponse:
        method = request.method
        attributes = {
            "http.request.method": method,
            "http.route": route,
            "url.path": request.path,
            "url.scheme": request.scheme,
            "server.address": request.host.split(":")[0],
            "user_agent.original": request.headers.get("User-Agent", ""),
        }
        # The status is set here, by the answer, never by the SDK from an exception: an
        # ``HTTPException`` raised for a 4xx is the client's mistake, and a server span of a
        # 4xx answer keeps an unset status (OpenTelemetry's HTTP conventions); only 5xx is Error.
        with tracer.start_as_current_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            started = perf_counter()
            status = 500
            description: str | None = None  # an unhandled exception's type and message
            try:
                response = await handler(request)
                status = response.status
            except web.HTTPException as exc:
                status = exc.status
                _stamp(exc, span)
                raise
            except Exception as exc:  # unhandled: aiohttp answers 500
                span.record_exception(exc)
                description = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                elapsed = perf_counter() - started
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR, description))
                labels = (method, route, str(status))
                metrics.server_duration.labels(*labels).observe(elapsed, exemplar=_exemplar())
                if route != "/metrics":
                    logger.bind(
                        http_method=method,
                        http_route=route,
                        http_status=status,
                        duration_ms=round(elapsed * 1000, 2),
                    ).info("request handled")
            _stamp(response, span)
            return response

    return middleware


def _stamp(response: web.StreamResponse, span: trace.Span) -> None:
    ctx = span.get_span_context()
    if ctx.is_valid and not response.prepared:
        trace_id = format(ctx.trace_id, "032x")
        response.headers["traceparent"] = (
            f"00-{trace_id}-{format(ctx.span_id, '016x')}-{format(ctx.trace_flags, '02x')}"
        )
        response.headers["X-Trace-Id"] = trace_id


def metrics_handler(registry: Any) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        if "application/openmetrics-text" in request.headers.get("Accept", ""):
            body = openmetrics.generate_latest(registry)  # type: ignore[no-untyped-call]
            ctype = openmetrics.CONTENT_TYPE_LATEST
        else:
            body, ctype = generate_latest(registry), CONTENT_TYPE_LATEST
        response = web.Response(body=body)
        response.headers["Content-Type"] = ctype
        return response

    return handle


def _client_span_config(stability: str) -> TraceConfig:
    """Each request a ``CLIENT`` span with its context injected into the headers, by
    opentelemetry-instrumentation-aiohttp-client, after the stable HTTP conventions
    (``OTEL_SEMCONV_STABILITY_OPT_IN``: ``http``, Safiri's default, or ``http/dup``).
    ``url.full`` is recorded without its query string or fragment (callback tokens)."""
    from opentelemetry.instrumentation._semconv import _StabilityMode
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    def url_filter(url: URL) -> str:
        return str(url.with_query(None).with_fragment(None))

    mode = _StabilityMode.HTTP_DUP if stability == "http/dup" else _StabilityMode.HTTP
    return create_trace_config(url_filter=url_filter, sem_conv_opt_in_mode=mode)


def _http_step_config() -> TraceConfig:
    """The first call inside an ``http_step`` is that step's span: the step gets the call's
    attributes and its context goes on the wire, and the instrumentation (next in the list) is
    suppressed for the call by its own switch, ``suppress_http_instrumentation``."""
    from opentelemetry.instrumentation.utils import suppress_http_instrumentation

    from ._tracing import HTTP_STEP

    config = TraceConfig()

    async def on_start(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestStartParams
    ) -> None:
        step = otel_context.get_value(HTTP_STEP)
        if not isinstance(step, dict) or step["taken"]:
            ctx.safiri_step = None
            return
        step["taken"] = True
        span: trace.Span = step["span"]
        url = params.url
        attributes: dict[str, Any] = {
            "http.request.method": params.method,
            "url.full": str(url.with_query(None).with_fragment(None)),
        }
        if url.host:
            attributes["server.address"] = url.host
        if url.port:
            attributes["server.port"] = url.port
        span.set_attributes(attributes)
        propagate.inject(params.headers)
        ctx.safiri_step = span
        ctx.safiri_suppressed = suppress_http_instrumentation()
        ctx.safiri_suppressed.__enter__()

    def _end(ctx: SimpleNamespace) -> trace.Span | None:
        span: trace.Span | None = getattr(ctx, "safiri_step", None)
        if span is not None:
            ctx.safiri_suppressed.__exit__(None, None, None)
        return span

    async def on_end(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestEndParams
    ) -> None:
        span = _end(ctx)
        if span is not None:
            status = params.response.status
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_attribute("error.type", str(status))

    async def on_error(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestExceptionParams
    ) -> None:
        span = _end(ctx)
        if span is not None:
            span.set_attribute("error.type", type(params.exception).__qualname__)

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_error)
    return config


def _client_metrics_config(metrics: HttpMetrics) -> TraceConfig:
    """Each request a sample of ``http_client_request_duration_seconds`` (Prometheus)."""
    config = TraceConfig()

    async def on_start(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestStartParams
    ) -> None:
        ctx.safiri_started = perf_counter()

    async def on_end(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestEndParams
    ) -> None:
        _observe_client(metrics, ctx, params.method, params.url.host, str(params.response.status))

    async def on_error(
        session: ClientSession, ctx: SimpleNamespace, params: TraceRequestExceptionParams
    ) -> None:
        _observe_client(metrics, ctx, params.method, params.url.host, "error")

    config.on_request_start.append(on_start)
    config.on_request_end.append(on_end)
    config.on_request_exception.append(on_error)
    return config


def _observe_client(
    metrics: HttpMetrics, ctx: SimpleNamespace, method: str, host: str | None, status: str
) -> None:
    elapsed = perf_counter() - ctx.safiri_started
    metrics.client_duration.labels(method, host or "", status).observe(elapsed)


def client_session(metrics: HttpMetrics, stability: str = "http", **kwargs: Any) -> ClientSession:
    """A ``ClientSession`` whose requests are client spans (trace context injected; the
    global tracer provider's, like the server spans) and latency samples; a request that is an
    ``http_step`` is that step's span instead of one of its own."""
    configs = [_http_step_config(), _client_span_config(stability), _client_metrics_config(metrics)]
    return ClientSession(trace_configs=configs, **kwargs)

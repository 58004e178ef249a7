"""Error monitoring: unhandled exceptions and ERROR log lines as Sentry events (Sentry SaaS or
a self-hosted GlitchTip; both take the same DSN), each with its stack, the service and the
``trace_id`` of the OpenTelemetry trace it happened in.

On only when ``SENTRY_DSN`` is set (``SentrySettings``); sentry-sdk is imported only then.

- OpenTelemetry keeps tracing: Sentry's own tracing is off (no ``traces_sample_rate``, so no
  transaction or span is sent), it propagates no ``sentry-trace``/``baggage`` header
  (``trace_propagation_targets=[]``), and no OTLP integration is installed: sentry-sdk 3.0
  sets a tracer provider or adds a span processor only in its opt-in ``OTLPIntegration``.
- Integrations: aiohttp (an unhandled exception in a handler is an event, with the request),
  asyncio (in a task; enabled on the app's start-up, when the loop runs) and loguru (an ERROR
  line or worse is an event, INFO and WARNING lines breadcrumbs). The loguru sinks are added
  here rather than by the integration's one-time setup, because ``configure_logging``
  replaces every loguru handler and a second ``setup`` in a process would leave none.
- Scrubbing by the rules of the logs (``_redaction``): in ``before_send`` and
  ``before_breadcrumb`` every string has its phone numbers masked and the values of secret
  names (``Authorization: Bearer ...``, ``api_key=...``, ``"token": "..."``) redacted, and
  in the user's data (extra, contexts, tags, the request's headers, query, cookies and
  data, breadcrumb data) a key naming a secret or a phone number is redacted or masked as in
  a log line. No default PII, no request bodies, no local variables.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from loguru import logger
from opentelemetry import trace

from ._redaction import _SECRET_KEYS, REDACTED, _key_kind, mask_phone, redact_value

if TYPE_CHECKING:
    from loguru import Record
    from sentry_sdk._types import Event

    from ._config import SentrySettings, TelemetryConfig

__all__ = ["ErrorMonitoring", "scrub_event", "scrub_text"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# ``Bearer <token>``, ``Basic <credentials>``: the credential goes.
_SCHEME_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# A name the logs treat as secret (the same words: authorization, api key, token, password,
# secret, pin, credential) followed by ``=`` or ``:``, quoted or not, and its value.
_NAMED_SECRET = re.compile(
    r"(?P<name>[\w.-]*" + _SECRET_KEYS.pattern + r"[\w.-]*)"
    r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>(?!\[REDACTED\])(?:Bearer\s+|Basic\s+)?[^\s\"',;&}\]]+)",
    re.IGNORECASE,
)

# Where the user's data is: under these keys of an event, key names decide as in a log line.
_DATA_SECTIONS = frozenset({"extra", "contexts", "tags", "request", "user", "data"})


def scrub_text(text: str) -> str:
    """Phone numbers masked, credentials and values of secret names redacted."""
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _NAMED_SECRET.sub(lambda m: m.group("name") + m.group("sep") + REDACTED, text)
    return mask_phone(text)


def _scrub_data(value: Any) -> Any:
    """The user's data: every key decides as in a log line; every string is scrubbed."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {key: _scrub_item(str(key), item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_data(item) for item in value]
    return value


def _scrub_item(key: str, value: Any) -> Any:
    kind = _key_kind(key)
    if kind == 2:
        return REDACTED
    if kind == 1 and isinstance(value, str | int) and not isinstance(value, bool):
        return redact_value(key, value)
    return _scrub_data(value)


def _scrub_structure(value: Any) -> Any:
    """The event's own structure (frames, exception, breadcrumbs, ...): strings scrubbed, keys
    kept, except in the sections that hold the user's data."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {
            key: (_scrub_data(item) if key in _DATA_SECTIONS else _scrub_structure(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub_structure(item) for item in value]
    return value


def scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    """The whole event with ``_redaction``'s rules applied (``before_send``)."""
    scrubbed: dict[str, Any] = _scrub_structure(event)
    return scrubbed


def _otel_ids() -> tuple[str, str] | None:
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _link_trace(event: dict[str, Any]) -> None:
    """The event's ``trace_id`` tag and trace context: the current OpenTelemetry span's, else
    the ones the request middleware put on the request's scope (an unhandled exception is
    captured by the aiohttp integration after the server span has ended)."""
    ids = _otel_ids()
    contexts = event.setdefault("contexts", {})
    tags = event.setdefault("tags", {})
    if ids is None:
        linked = contexts.get("trace") or {}
        if tags.get("trace_id") != linked.get("trace_id") or not tags.get("trace_id"):
            return  # outside any trace: Sentry's own trace context stays, no trace_id tag
        ids = linked["trace_id"], linked.get("span_id", "")
    trace_id, span_id = ids
    trace_context = dict(contexts.get("trace") or {})
    trace_context.update(trace_id=trace_id, span_id=span_id)
    trace_context.pop("parent_span_id", None)
    dsc = trace_context.get("dynamic_sampling_context")
    if isinstance(dsc, dict):
        trace_context["dynamic_sampling_context"] = {**dsc, "trace_id": trace_id}
    contexts["trace"] = trace_context
    tags["trace_id"] = trace_id


def _message_only(record: Record) -> str:
    """The loguru sinks' format: the message alone (no time, so events group by message; a
    callable format, so loguru appends no traceback text: the exception is sent as such)."""
    return "{message}"


class ErrorMonitoring:
    """The Sentry client of this process, configured from ``TelemetryConfig``."""

    def __init__(self, config: TelemetryConfig, settings: SentrySettings) -> None:
        import sentry_sdk
        from sentry_sdk.integrations.aiohttp import AioHttpIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.integrations.loguru import (
            LoggingLevels,
            LoguruBreadcrumbHandler,
            LoguruEventHandler,
            LoguruIntegration,
        )

        self.service = config.service_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task_factory: Any = None
        # sentry-sdk 3 (the extra asks for 3.x): what it may collect beyond the event itself.
        privacy: dict[str, Any] = {
            "data_collection": {
                "user_info": False,
                "cookies": {"mode": "off"},
                "http_bodies": [],
                "stack_frame_variables": False,
                "database_query_data": False,
                "gen_ai": {"inputs": False, "outputs": False},
            }
        }
        sentry_sdk.init(
            dsn=settings.dsn,
            environment=settings.environment or config.environment,
            release=settings.release or f"{config.service_name}@{config.service_version}",
            server_name=config.service_name,
            before_send=self._before_send,
            before_breadcrumb=self._before_breadcrumb,
            traces_sample_rate=None,
            trace_propagation_targets=[],
            auto_enabling_integrations=False,
            integrations=[
                AioHttpIntegration(),
                # Its sinks are added below: none from its one-time setup.
                LoguruIntegration(level=None, event_level=None, breadcrumb_level=None),
            ],
            # The standard library's records reach loguru (configure_logging): not twice.
            disabled_integrations=[LoggingIntegration],
            **privacy,
        )
        self._client = sentry_sdk.get_client()
        self._sinks = [
            logger.add(
                LoguruEventHandler(level=LoggingLevels.ERROR.value),
                level="ERROR",
                format=_message_only,
            ),
            logger.add(
                LoguruBreadcrumbHandler(level=LoggingLevels.INFO.value),
                level="INFO",
                format=_message_only,
                filter=lambda record: record["level"].no < LoggingLevels.ERROR.value,
            ),
        ]

    @classmethod
    def start(cls, config: TelemetryConfig) -> ErrorMonitoring | None:
        return None if config.sentry is None else cls(config, config.sentry)

    def _before_send(self, event: Event, hint: dict[str, Any]) -> Event:
        plain = cast(dict[str, Any], event)
        _link_trace(plain)
        plain.setdefault("tags", {})["service"] = self.service
        return cast("Event", scrub_event(plain))

    def _before_breadcrumb(self, crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
        return scrub_event(crumb)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Inside the server span: its ids on the request's Sentry scope, for the event of an
        unhandled exception, which the aiohttp integration captures after the span ended."""
        import sentry_sdk

        ids = _otel_ids()
        if ids is not None:
            scope = sentry_sdk.get_isolation_scope()
            scope.set_tag("trace_id", ids[0])
            scope.set_context("trace", {"trace_id": ids[0], "span_id": ids[1]})
        return await handler(request)

    async def on_startup(self, app: web.Application) -> None:
        """The asyncio integration patches the running loop: an exception that ends a task
        is an event."""
        from sentry_sdk.integrations.asyncio import enable_asyncio_integration

        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop, self._task_factory = loop, loop.get_task_factory()
            enable_asyncio_integration(task_spans=False)

    async def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (for at most ``timeout`` seconds) and stop the client; the
        loop's task factory and loguru are left as they were found."""
        import sentry_sdk

        if self._loop is not None and self._loop is asyncio.get_running_loop():
            self._loop.set_task_factory(self._task_factory)
            self._loop = None
        for sink in self._sinks:
            logger.remove(sink)
        self._sinks = []
        await asyncio.to_thread(self._client.close, timeout)
        if sentry_sdk.get_client() is self._client:
            sentry_sdk.get_global_scope().set_client(None)

"""Error monitoring with the real sentry-sdk against a loopback server that speaks Sentry's
envelope protocol (``POST /api/<project>/envelope/``, gzip or brotli bodies).

What it proves: an unhandled exception in an aiohttp handler and an ERROR log line each become
an event with its stack, the service and the ``trace_id`` of the request's trace (the
``X-Trace-Id`` the response carried); lower log levels are breadcrumbs only; phone numbers,
API keys and bearer tokens sent in the exception message, the log lines, the headers and the
query string appear in no byte of any envelope; Sentry sends no transaction and installs no
span processor, so the spans still reach the process's OpenTelemetry exporter; without
``SENTRY_DSN`` no client exists. Each test shuts its telemetry down, which closes the client.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import sentry_sdk
from aiohttp import web
from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from safiri_telemetry import Telemetry
from tests.conftest import eventually, serving

pytestmark = pytest.mark.integration

# Secrets and personal data the requests carry; none may reach Sentry.
PHONE = "254712345678"
MASKED_PHONE = "2547*****678"
API_KEY = "sfr-live-Zq81xKpV0c3w"
TOKEN = "eyJhbGciOi.payload.Sig9Xw"
SERVICE = "sentry-svc"


@dataclass
class Envelope:
    raw: bytes  # the decompressed body, as sent
    header: dict[str, Any]
    items: list[tuple[dict[str, Any], bytes]]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for head, body in self.items if head.get("type") == "event"]


@dataclass
class Receiver:
    dsn: str
    envelopes: list[Envelope] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [event for envelope in self.envelopes for event in envelope.events()]

    def item_types(self) -> set[str]:
        return {str(head.get("type")) for env in self.envelopes for head, _ in env.items}

    def raw(self) -> bytes:
        return b"\n".join(envelope.raw for envelope in self.envelopes)


def parse_envelope(raw: bytes) -> Envelope:
    """Sentry's envelope: a header line, then items, each a header line and a payload of
    ``length`` bytes (or up to the next newline when the header gives no length)."""
    first, _, rest = raw.partition(b"\n")
    items: list[tuple[dict[str, Any], bytes]] = []
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        head = json.loads(line)
        if "length" in head:
            payload, rest = rest[: head["length"]], rest[head["length"] :]
            rest = rest.removeprefix(b"\n")
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((head, payload))
    return Envelope(raw, json.loads(first), items)


def decompress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":  # what sentry-sdk sends when the brotli module is installed
        import brotli  # type: ignore[import-untyped]

        return bytes(brotli.decompress(body))
    if encoding == "deflate":
        return zlib.decompress(body)
    assert encoding in ("", "identity"), encoding
    return body


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box: list[Receiver] = []

    async def envelope(request: web.Request) -> web.Response:
        body = decompress(await request.read(), request.headers.get("Content-Encoding", ""))
        box[0].paths.append(request.path)
        box[0].envelopes.append(parse_envelope(body))
        return web.json_response({"id": box[0].envelopes[-1].header.get("event_id")})

    app = web.Application()
    app.router.add_post("/api/{project_id}/envelope/", envelope)
    async with serving(app, auto_decompress=False) as base:
        box.append(Receiver(dsn=base.replace("http://", "http://public@") + "/1"))
        yield box[0]


@pytest.fixture(autouse=True)
def no_client_left() -> Iterator[None]:
    """Whatever a test does, the next one starts without a Sentry client."""
    yield
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.get_global_scope().set_client(None)


def sentry_env(receiver: Receiver) -> dict[str, str]:
    return {
        "SENTRY_DSN": receiver.dsn,
        "SENTRY_ENVIRONMENT": "test-env",
        "SENTRY_RELEASE": "safiri@test",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }


def setup(env: dict[str, str]) -> Telemetry:
    return Telemetry.setup(
        SERVICE, env=env, install_global=False, log_stream=io.StringIO(), export_logs=False
    )


def processors(provider: TracerProvider) -> list[Any]:
    return list(provider._active_span_processor._span_processors)


async def received(receiver: Receiver, count: int, what: str) -> list[dict[str, Any]]:
    """The events, once ``count`` have come (the client flushed from a thread: the receiver
    answers on this loop)."""

    async def probe() -> list[dict[str, Any]] | None:
        await asyncio.to_thread(sentry_sdk.flush, 2)
        events = receiver.events()
        return events if len(events) >= count else None

    return await eventually(probe, timeout=15, what=what)


def build_app(
    telemetry: Telemetry, tasks: list[asyncio.Task[None]] | None = None
) -> web.Application:
    async def crash(request: web.Request) -> web.Response:
        logger.bind(api_key=API_KEY, phone=PHONE).warning(
            "retrying {} with Authorization: Bearer {}", PHONE, TOKEN
        )
        raise RuntimeError(f"charge failed for {PHONE}: api_key={API_KEY} token={TOKEN}")

    async def complain(request: web.Request) -> web.Response:
        logger.info("looking the order up")
        logger.bind(phone=PHONE, api_key=API_KEY).error(
            "provider refused api_key={} for {} (Bearer {})", API_KEY, PHONE, TOKEN
        )
        return web.json_response({"ok": True})

    async def in_background(request: web.Request) -> web.Response:
        async def reconcile() -> None:
            raise LookupError("reconciliation found no payment")

        assert tasks is not None
        tasks.append(asyncio.get_running_loop().create_task(reconcile()))
        return web.json_response({"accepted": True}, status=202)

    app = web.Application()
    app.router.add_post("/orders/{order_id}", crash)
    app.router.add_post("/reconciliations", in_background)
    app.router.add_get("/orders/{order_id}", complain)
    return telemetry.instrument(app)


HEADERS = {
    "Authorization": f"Bearer {TOKEN}",
    "X-Api-Key": API_KEY,
    "X-Msisdn": PHONE,
}


async def test_an_unhandled_exception_is_an_event_with_its_stack_service_and_trace_id(
    receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    before = processors(provider)
    telemetry = setup(sentry_env(receiver))
    # aiohttp answers an unhandled exception with a 500 of its own, without X-Trace-Id: the
    # request brings its trace instead, as a caller's traceparent.
    trace_id = uuid.uuid4().hex
    traceparent = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    async with serving(build_app(telemetry)) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/orders/o-1", headers=HEADERS | traceparent) as response:
            assert response.status == 500
        [event] = await received(receiver, 1, "the exception's event")
        assert receiver.paths == ["/api/1/envelope/"] * len(receiver.paths)
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert (exception["mechanism"]["type"], exception["mechanism"]["handled"]) == ("aiohttp", False)
    frames = exception["stacktrace"]["frames"]
    assert "crash" in [frame["function"] for frame in frames]
    assert all("vars" not in frame for frame in frames)  # no local variables
    assert event["tags"]["service"] == SERVICE
    assert event["server_name"] == SERVICE
    assert (event["environment"], event["release"]) == ("test-env", "safiri@test")
    assert event["tags"]["trace_id"] == trace_id
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    # OpenTelemetry still owns tracing: the server span reached the process's exporter, Sentry
    # added no span processor and sent no transaction or span of its own.
    server = [s for s in spans.get_finished_spans() if s.name == "POST /orders/{order_id}"]
    assert [format(s.context.trace_id, "032x") for s in server] == [trace_id]
    assert trace.get_tracer_provider() is provider
    assert processors(provider) == before
    assert not receiver.item_types() & {"transaction", "span"}
    await telemetry.shutdown()
    assert not sentry_sdk.get_client().is_active()


async def test_an_error_log_line_is_an_event_and_lower_levels_only_breadcrumbs(
    receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    telemetry = setup(sentry_env(receiver))
    async with serving(build_app(telemetry)) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/orders/o-2") as response:
            assert response.status == 200
            trace_id = response.headers["X-Trace-Id"]
        [event] = await received(receiver, 1, "the ERROR line's event")
    await telemetry.shutdown()
    assert event["level"] == "error"
    assert event["logentry"]["formatted"].startswith("provider refused api_key=")
    assert event["tags"]["trace_id"] == trace_id
    assert event["contexts"]["trace"]["trace_id"] == trace_id
    assert event["tags"]["service"] == SERVICE
    [thread] = event["threads"]["values"]  # the stack of the logging call
    assert "complain" in [frame["function"] for frame in thread["stacktrace"]["frames"]]
    crumbs = [c["message"] for c in event["breadcrumbs"]["values"]]
    assert "looking the order up" in crumbs


async def test_an_exception_that_ends_a_task_is_an_event_in_its_trace(
    receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    factory = asyncio.get_running_loop().get_task_factory()
    telemetry = setup(sentry_env(receiver))
    tasks: list[asyncio.Task[None]] = []
    async with serving(build_app(telemetry, tasks)) as base, aiohttp.ClientSession() as http:
        async with http.post(f"{base}/reconciliations") as response:
            assert response.status == 202
            trace_id = response.headers["X-Trace-Id"]
        [event] = await received(receiver, 1, "the task's event")
    [task] = tasks
    assert isinstance(task.exception(), LookupError)  # retrieved: asyncio logs nothing more
    [exception] = event["exception"]["values"]
    assert (exception["type"], exception["mechanism"]["type"]) == ("LookupError", "asyncio")
    assert event["tags"]["trace_id"] == trace_id
    # Shut down, the loop creates its tasks as it did before.
    assert asyncio.get_running_loop().get_task_factory() is factory


async def test_no_phone_number_key_or_token_reaches_sentry(
    receiver: Receiver, spans: InMemorySpanExporter
) -> None:
    telemetry = setup(sentry_env(receiver))
    async with serving(build_app(telemetry)) as base, aiohttp.ClientSession() as http:
        query = {"phone": PHONE, "api_key": API_KEY}
        async with http.post(f"{base}/orders/o-3", headers=HEADERS, params=query) as response:
            assert response.status == 500
        async with http.get(f"{base}/orders/o-3", headers=HEADERS, params=query) as response:
            assert response.status == 200
        events = await received(receiver, 2, "both events")
    await telemetry.shutdown()
    raw = receiver.raw()
    for secret in (PHONE, API_KEY, TOKEN):
        assert secret.encode() not in raw, f"{secret} reached Sentry"
    # What was scrubbed still arrived, masked: the events are there, not dropped.
    assert MASKED_PHONE.encode() in raw
    by_kind = {("exception" in e): e for e in events}
    crash, log = by_kind[True], by_kind[False]
    assert crash["exception"]["values"][0]["value"].startswith(f"charge failed for {MASKED_PHONE}")
    assert crash["request"]["headers"]["X-Msisdn"] == MASKED_PHONE
    warning = [c for c in crash["breadcrumbs"]["values"] if c["message"].startswith("retrying")]
    assert [c["level"] for c in warning] == ["warning"]
    assert MASKED_PHONE in log["logentry"]["formatted"]


async def test_without_sentry_dsn_no_client_is_started(spans: InMemorySpanExporter) -> None:
    telemetry = setup({"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    assert telemetry.config.sentry is None
    assert not sentry_sdk.get_client().is_active()
    await telemetry.shutdown()

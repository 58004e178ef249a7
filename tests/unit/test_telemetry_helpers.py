"""libs/telemetry's helpers for a new service: ``instrument``, and the messaging spans used
as the README's example service uses them (``publish_span`` around a publish, ``consume_span``
inside ``message.process``).

The aio-pika side runs against in-memory fakes of an exchange and a delivered message; the
acknowledgement itself is aio-pika's own ``ProcessContext``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
import pytest
from aio_pika import Message
from aio_pika.abc import AbstractExchange, AbstractIncomingMessage
from aio_pika.message import ProcessContext
from aiohttp import web
from loguru import logger
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from safiri_telemetry import (
    DEFAULT_EXCHANGE,
    Telemetry,
    business_span,
    consume_span,
    context_from_carrier,
    publish_span,
)
from tests.conftest import serving

pytestmark = pytest.mark.unit


def quiet_telemetry(
    logs: io.StringIO | None = None, processor: BatchSpanProcessor | None = None
) -> Telemetry:
    return Telemetry.setup(
        "helpers-svc",
        install_global=False,
        log_stream=logs or io.StringIO(),
        span_processor=processor or SimpleSpanProcessor(InMemorySpanExporter()),
    )


class FakeExchange:
    """An aio-pika exchange as far as publishing goes: its name and ``publish``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.published: list[tuple[Message, str]] = []

    async def publish(self, message: Message, routing_key: str, **kwargs: Any) -> None:
        self.published.append((message, routing_key))


class FakeDelivery:
    """A delivered message: settled through aio-pika's real ``ProcessContext``."""

    def __init__(
        self,
        headers: dict[str, Any],
        *,
        message_id: str | None = "m-1",
        routing_key: str = "bookings",
        redelivered: bool = False,
    ) -> None:
        self.headers = headers
        self.message_id = message_id
        self.routing_key = routing_key
        self.redelivered = redelivered
        self.exchange = ""  # the default exchange, as aio-pika reports it
        self.body = b"{}"
        self.processed = False
        self.settled: list[str] = []

    def process(
        self,
        requeue: bool = False,
        reject_on_redelivered: bool = False,
        ignore_processed: bool = False,
    ) -> ProcessContext:
        return ProcessContext(
            cast(Any, self),
            requeue=requeue,
            reject_on_redelivered=reject_on_redelivered,
            ignore_processed=ignore_processed,
        )

    async def ack(self, multiple: bool = False) -> None:
        self._settle("ack")

    async def reject(self, requeue: bool = False) -> None:
        self._settle(f"reject(requeue={requeue})")

    def _settle(self, how: str) -> None:
        if self.processed:
            raise RuntimeError(f"already settled: {self.settled}")
        self.processed = True
        self.settled.append(how)


def exchange(name: str) -> tuple[FakeExchange, AbstractExchange]:
    fake = FakeExchange(name)
    return fake, cast(AbstractExchange, fake)


def delivered(fake: FakeDelivery) -> AbstractIncomingMessage:
    return cast(AbstractIncomingMessage, fake)


def only(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in spans.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in spans.get_finished_spans()]
    return found[0]


def traceparent_of(span: ReadableSpan) -> str:
    assert span.context is not None
    ctx = span.context
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


# -- instrument ----------------------------------------------------------------------------


async def test_instrument_puts_the_middleware_first_and_serves_metrics(
    spans: InMemorySpanExporter,
) -> None:
    telemetry = quiet_telemetry()

    @web.middleware
    async def inner(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        return await handler(request)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[inner])
    assert telemetry.instrument(app) is app
    assert list(app.middlewares) == [telemetry.middleware, inner]  # outermost: times them all
    app.router.add_get("/hello/{name}", hello)

    async with serving(app) as base, aiohttp.ClientSession() as http:
        async with http.get(f"{base}/hello/amina") as response:
            assert response.status == 200
            assert response.headers["X-Trace-Id"]
        async with http.get(f"{base}/metrics") as metrics:
            assert metrics.status == 200
            exposition = await metrics.text()

    assert 'http_route="/hello/{name}"' in exposition
    assert 'telemetry_export_failures_total{signal="traces"} 0.0' in exposition
    server = only(spans, "GET /hello/{name}")
    assert server.kind == SpanKind.SERVER


async def test_instrument_flushes_the_queued_spans_when_the_app_is_cleaned_up() -> None:
    exporter = InMemorySpanExporter()
    # Spans leave only in batches of 512 or every minute: nothing is exported before cleanup.
    processor = BatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    telemetry = quiet_telemetry(processor=processor)
    app = telemetry.instrument(web.Application())
    provider = telemetry.tracer_provider
    assert provider is not None

    async with serving(app):
        provider.get_tracer("test").start_span("queued").end()
        assert exporter.get_finished_spans() == ()

    assert [s.name for s in exporter.get_finished_spans()] == ["queued"]
    # and the provider is shut down: later spans go nowhere
    provider.get_tracer("test").start_span("after").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["queued"]


# -- publish_span --------------------------------------------------------------------------


async def published(
    exchange_name: str = "",
    routing_key: str = "bookings",
    message_id: str = "m-1",
    headers: dict[str, Any] | None = None,
    parent: Any = None,
) -> Message:
    """A message published as the README's example service does: built and sent inside a
    ``publish_span``, with the headers it filled; the one sent is returned."""
    fake, events = exchange(exchange_name)
    carrier = dict(headers or {})
    with publish_span(exchange_name, routing_key, message_id, carrier, parent=parent):
        message = Message(b"{}", headers=carrier, message_id=message_id)
        await events.publish(message, routing_key=routing_key)
    assert fake.published == [(message, routing_key)]
    return message


async def test_publish_span_is_a_producer_span_whose_context_rides_in_the_headers(
    spans: InMemorySpanExporter,
) -> None:
    with business_span("book_seat"):
        message = await published(message_id="t-1", headers={"x-origin": "test"})

    parent = only(spans, "book_seat")
    producer = only(spans, "publish")
    assert producer.kind == SpanKind.PRODUCER
    assert producer.parent is not None and parent.context is not None
    assert producer.parent.span_id == parent.context.span_id
    assert dict(producer.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "",  # the default exchange
        "messaging.rabbitmq.destination.routing_key": "bookings",
        "messaging.message.id": "t-1",
    }
    assert message.headers["traceparent"] == traceparent_of(producer)
    assert message.headers["x-origin"] == "test"  # the caller's own headers are kept


async def test_publish_span_is_named_after_the_exchange_and_records_each_message_id(
    spans: InMemorySpanExporter,
) -> None:
    await published("safiri.events", "order.paid", "m-1")
    await published("safiri.events", "order.paid", "m-2")

    producers = [s for s in spans.get_finished_spans() if s.name == "publish safiri.events"]
    assert [(s.attributes or {}).get("messaging.message.id") for s in producers] == ["m-1", "m-2"]
    assert [(s.attributes or {}).get("messaging.destination.name") for s in producers] == [
        "safiri.events",
        "safiri.events",
    ]


async def test_publish_span_can_continue_a_stored_context(
    spans: InMemorySpanExporter,
) -> None:
    stored = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    message = await published("safiri.events", "order.paid", parent=context_from_carrier(stored))

    producer = only(spans, "publish safiri.events")
    assert producer.context is not None and producer.parent is not None
    assert f"{producer.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert f"{producer.parent.span_id:016x}" == "b7ad6b7169203331"
    assert message.headers["traceparent"] == traceparent_of(producer)


async def test_a_failed_publish_marks_the_producer_span_as_an_error(
    spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(ConnectionError), publish_span("", "bookings", "m-1", {}):
        raise ConnectionError("channel closed")

    producer = only(spans, "publish")
    assert producer.status.status_code == StatusCode.ERROR
    assert [e.name for e in producer.events] == ["exception"]


# -- consume_span, as the README's example service consumes -------------------------------


def consumer_of(
    queue: str, handler: Callable[[AbstractIncomingMessage], Awaitable[None]]
) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
    """The README's consumer callback: settled around a ``consume_span`` that runs ``handler``."""

    async def consume(message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False):
            with consume_span(
                queue,
                message.routing_key or "",
                message.message_id,
                message.headers,
                redelivered=bool(message.redelivered),
                exchange=message.exchange or DEFAULT_EXCHANGE,
            ):
                await handler(message)

    return consume


async def published_headers() -> tuple[dict[str, Any], str]:
    """Headers as a producer wrote them, and that producer's traceparent."""
    message = await published()
    return dict(message.headers), str(message.headers["traceparent"])


async def test_a_consume_span_continues_the_producers_trace_and_the_message_is_acked(
    spans: InMemorySpanExporter,
) -> None:
    headers, traceparent = await published_headers()
    producer = only(spans, "publish")
    seen: list[trace.Span] = []

    async def handler(message: AbstractIncomingMessage) -> None:
        seen.append(trace.get_current_span())

    delivery = FakeDelivery(headers, redelivered=True)
    await consumer_of("bookings", handler)(delivered(delivery))

    assert delivery.settled == ["ack"]
    consumer = only(spans, "process bookings")
    assert consumer.context is not None and producer.context is not None
    assert seen[0].get_span_context().span_id == consumer.context.span_id  # the handler runs in it
    assert consumer.kind == SpanKind.CONSUMER
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == producer.context.trace_id
    assert [link.context.span_id for link in consumer.links] == [producer.context.span_id]
    assert dict(consumer.attributes or {}) == {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "",  # published to the default exchange
        "messaging.destination.subscription.name": "bookings",
        "messaging.rabbitmq.destination.routing_key": "bookings",
        "messaging.message.id": "m-1",
        "safiri.message.redelivered": True,
    }
    assert traceparent.split("-")[1] == f"{consumer.context.trace_id:032x}"


async def test_a_failing_handler_marks_the_span_the_message_is_rejected_and_logs_carry_the_trace(
    spans: InMemorySpanExporter,
) -> None:
    logs = io.StringIO()
    quiet_telemetry(logs)
    headers, _ = await published_headers()

    async def handler(message: AbstractIncomingMessage) -> None:
        logger.bind(message_id=message.message_id).warning("trip not found")
        raise ValueError("no such trip")

    delivery = FakeDelivery(headers)
    with pytest.raises(ValueError, match="no such trip"):  # propagates: nothing swallowed it
        await consumer_of("bookings", handler)(delivered(delivery))

    assert delivery.settled == ["reject(requeue=False)"]  # dead-lettered or dropped
    consumer = only(spans, "process bookings")
    assert consumer.status.status_code == StatusCode.ERROR
    assert [e.name for e in consumer.events] == ["exception"]
    assert consumer.context is not None
    [line] = [
        line
        for line in map(json.loads, logs.getvalue().splitlines())
        if line["message"] == "trip not found"
    ]
    assert line["trace_id"] == f"{consumer.context.trace_id:032x}"
    assert line["span_id"] == f"{consumer.context.span_id:016x}"
    assert line["message_id"] == "m-1"


async def test_a_message_without_a_trace_starts_one(spans: InMemorySpanExporter) -> None:
    async def handler(message: AbstractIncomingMessage) -> None:
        pass

    delivery = FakeDelivery({}, message_id=None)
    await consumer_of("bookings", handler)(delivered(delivery))

    assert delivery.settled == ["ack"]
    consumer = only(spans, "process bookings")
    assert consumer.parent is None
    assert consumer.links == ()
    assert "messaging.message.id" not in (consumer.attributes or {})


def test_the_library_has_no_second_consumer_or_publisher() -> None:
    """Consuming goes through safiri_messaging (or a service's own callback around
    ``consume_span``); the library offers spans, not another consumer."""
    import safiri_telemetry

    for name in ("traced_consumer", "consume_messages", "publish_message"):
        assert not hasattr(safiri_telemetry, name), name
    assert {"publish_span", "consume_span"} <= set(safiri_telemetry.__all__)


def test_the_library_imports_without_aio_pika() -> None:
    """aio-pika is needed only by whoever publishes or consumes through the helpers."""
    code = "import sys; sys.modules['aio_pika'] = None; import safiri_telemetry"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

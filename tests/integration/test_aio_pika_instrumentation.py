"""Why libs/telemetry keeps its own messaging spans instead of opentelemetry-instrumentation-
aio-pika (the design card's choice), shown on the real broker rather than said.

The same message is published and consumed twice on the run's own vhost: once through the
instrumentation package, once the way Safiri does it: published inside ``publish_span`` (as
the outbox relay does) and consumed through ``safiri_messaging.consume``, the one consumer
path, which handles each message inside ``consume_span``. The
package's spans use attribute names the messaging conventions have deprecated or never had
(``messaging.destination``, ``messaging.operation``, ``net.peer.name``), name the producer
after ``exchange,routing_key``, call a push consumer's work "receive", carry no routing key,
operation type or redelivery flag, and the package has no hooks to change any of that (a span
processor can add attributes but cannot remove them). Safiri's spans follow the current
conventions. When this test starts failing on the package's side, the package has caught up:
switch to it then (libs/telemetry/README.md, "Messaging spans").
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from safiri_messaging import Envelope, MessagingMetrics, consume
from safiri_telemetry import DEFAULT_EXCHANGE, publish_span
from tests.conftest import eventually

pytestmark = pytest.mark.integration

# Attribute names the OpenTelemetry messaging and network conventions deprecated or replaced.
DEPRECATED = {"messaging.destination", "messaging.operation", "net.peer.name", "net.peer.port"}
CURRENT = {"messaging.operation.type", "messaging.operation.name", "messaging.destination.name"}


@pytest.fixture
def package_spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    AioPikaInstrumentor().instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        AioPikaInstrumentor().uninstrument()


async def _round_trip(amqp_url: str, queue_name: str, safiri: bool) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, auto_delete=True)
        got = asyncio.Event()

        async def handle(envelope: Envelope) -> None:
            got.set()

        async def package_handle(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                got.set()

        if safiri:
            await consume(queue, handle, MessagingMetrics(CollectorRegistry()))
            headers: dict[str, Any] = {}
            with publish_span(DEFAULT_EXCHANGE, queue.name, "m-1", headers):
                await channel.default_exchange.publish(
                    aio_pika.Message(b"{}", headers=headers, message_id="m-1"),
                    routing_key=queue.name,
                )
        else:
            await queue.consume(package_handle)
            await channel.default_exchange.publish(
                aio_pika.Message(b"{}", message_id="m-1"), routing_key=queue.name
            )
        await asyncio.wait_for(got.wait(), 10)
    finally:
        await connection.close()


def _by_kind(spans: tuple[ReadableSpan, ...], kind: SpanKind) -> ReadableSpan:
    [span] = [s for s in spans if s.kind is kind]
    return span


async def test_the_package_emits_deprecated_names_where_safiri_emits_current_ones(
    amqp_url: str, run_id: str, package_spans: InMemorySpanExporter, spans: InMemorySpanExporter
) -> None:
    await _round_trip(amqp_url, f"instrumented-{run_id}", safiri=False)

    async def both() -> tuple[ReadableSpan, ...] | None:
        done = package_spans.get_finished_spans()
        return done if len(done) >= 2 else None

    theirs = await eventually(both, timeout=10, what="the package's two spans")
    producer, consumer = _by_kind(theirs, SpanKind.PRODUCER), _by_kind(theirs, SpanKind.CONSUMER)
    for span in (producer, consumer):
        names = set(span.attributes or {})
        assert names & DEPRECATED, names
        assert not names & {
            "messaging.operation.type",
            "messaging.rabbitmq.destination.routing_key",
        }
    assert producer.name == f",instrumented-{run_id} send"
    assert consumer.name.endswith(" receive")  # a push consumer's work is "process"

    await _round_trip(amqp_url, f"safiri-{run_id}", safiri=True)

    async def ours() -> tuple[ReadableSpan, ...] | None:
        done = tuple(
            s for s in spans.get_finished_spans() if "messaging.system" in (s.attributes or {})
        )
        return done if len(done) >= 2 else None

    mine = await eventually(ours, timeout=10, what="Safiri's two spans")
    for span in (_by_kind(mine, SpanKind.PRODUCER), _by_kind(mine, SpanKind.CONSUMER)):
        names = set(span.attributes or {})
        assert names >= CURRENT and not names & DEPRECATED, names
        assert "messaging.rabbitmq.destination.routing_key" in names

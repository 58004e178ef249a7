"""libs/telemetry/README.md: its example service runs as written, in one trace end to end.

The code block is taken from the README itself, so the README cannot drift from what works
(nor from the length it claims).
It needs RabbitMQ (the run's own vhost, from the ``amqp_url`` fixture). The block also serves
``GET /metrics`` and shuts its telemetry down when the app is cleaned up.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from safiri_telemetry import Telemetry
from tests.conftest import eventually, serving

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "libs" / "telemetry" / "README.md"
AppFactory = Callable[[Telemetry, str], Awaitable[web.Application]]


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    found = [block for block in blocks if "def create_app" in block]
    assert len(found) == 1, "the README should hold exactly one example service"
    return cast(str, found[0])


class ShutdownRecorded(SimpleSpanProcessor):
    """This service's own span processor: exports nowhere, remembers being shut down."""

    def __init__(self, exporter: SpanExporter) -> None:
        super().__init__(exporter)
        self.shut_down = False

    def shutdown(self) -> None:
        self.shut_down = True
        super().shutdown()


async def test_the_readme_service_books_a_seat_in_one_trace_from_request_to_consumer(
    amqp_url: str, spans: InMemorySpanExporter
) -> None:
    namespace: dict[str, Any] = {"__name__": "readme_example"}  # not __main__: no run_app
    exec(compile(readme_example(), str(README), "exec"), namespace)
    create_app = cast(AppFactory, namespace["create_app"])
    logs = io.StringIO()
    # The process-wide provider (the ``spans`` fixture's) records the spans; this service's
    # own provider must not export anywhere.
    processor = ShutdownRecorded(InMemorySpanExporter())
    telemetry = Telemetry.setup(
        "booking", install_global=False, log_stream=logs, span_processor=processor
    )

    app = await create_app(telemetry, amqp_url)
    async with (
        serving(app) as booking,
        aiohttp.ClientSession() as http,
        http.post(f"{booking}/trips/t-42/bookings") as response,
    ):
        assert response.status == 201
        assert await response.json() == {"trip_id": "t-42"}
        trace_id = response.headers["X-Trace-Id"]

        async def confirmed() -> dict[str, Any] | None:
            lines = [json.loads(line) for line in logs.getvalue().splitlines()]
            return next((ln for ln in lines if ln["message"] == "booking confirmed"), None)

        consumed = await eventually(confirmed, timeout=10, what="the booking to be consumed")
        async with http.get(f"{booking}/metrics") as metrics:
            assert metrics.status == 200
            exposition = await metrics.text()
        assert not processor.shut_down
    assert processor.shut_down, "the app's cleanup should shut its telemetry down"

    assert consumed["trace_id"] == trace_id
    assert consumed["trip_id"] == "t-42"
    booked = next(json.loads(ln) for ln in logs.getvalue().splitlines() if "seat booked" in ln)
    assert booked["trace_id"] == trace_id
    finished = [s for s in spans.get_finished_spans() if s.context is not None]
    trace_spans = [s for s in finished if format(s.context.trace_id, "032x") == trace_id]
    in_trace = {(s.name, s.kind) for s in trace_spans}
    assert {
        ("POST /trips/{trip_id}/bookings", SpanKind.SERVER),
        ("book_seat", SpanKind.INTERNAL),
        ("publish", SpanKind.PRODUCER),
        ("process bookings", SpanKind.CONSUMER),
    } <= in_trace
    producer = next(s for s in trace_spans if s.kind == SpanKind.PRODUCER)
    consumer = next(s for s in trace_spans if s.kind == SpanKind.CONSUMER)
    assert consumer.parent is not None and producer.context is not None
    assert consumer.parent.span_id == producer.context.span_id  # carried in the headers
    assert (consumer.attributes or {})["messaging.message.id"] == (
        (producer.attributes or {})["messaging.message.id"]
    )
    assert 'http_route="/trips/{trip_id}/bookings"' in exposition
    assert 'telemetry_export_failures_total{signal="traces"} 0.0' in exposition


def test_the_readme_says_how_long_its_example_is() -> None:
    claimed = re.search(r"complete in (\d+) lines", README.read_text())
    assert claimed is not None, "the README should say how long its example service is"
    lines = [line for line in readme_example().splitlines() if line.strip()]
    assert len(lines) == int(claimed[1])

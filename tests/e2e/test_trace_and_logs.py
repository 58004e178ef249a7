"""One trace follows a purchase across every service, span for span; every log line carries it.

The exact checks run on a suite of this module's own, quiet between purchases: the first
purchase after payment starts asks the provider for a token (deterministically, here), and a
log line written while a purchase is handled is one of that purchase's lines, whichever
process wrote it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from safiri.otlp import ReceivedSpan
from tests.conftest import eventually

from .conftest import Running, suite_of_its_own
from .purchase_trace import SERVICES, barrier, label, purchase_shape, settled_trace

pytestmark = pytest.mark.e2e

PHONE = "254712345678"


@dataclass
class Quiet:
    running: Running
    first_trace_id: str  # the suite's first purchase: it fetched the provider's token


@pytest_asyncio.fixture(scope="module")
async def quiet(run_id: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Quiet]:
    """A suite of this module's own, after one purchase: nothing runs in it but the tests'."""
    async with suite_of_its_own(run_id, "traces", tmp_path_factory.mktemp("trace-logs")) as r:
        trip = await r.next_trip()
        status, body, headers = await r.place_order(trip["trip_id"])
        assert status == 202, body
        await r.final_order(body["order_id"])
        await barrier(r.http, r.spans, r.ports)
        yield Quiet(r, headers["X-Trace-Id"])


async def settled(running: Running, trace_id: str, **shape: Any) -> list[ReceivedSpan]:
    spans, _ = await settled_trace(
        running.http, running.spans, running.ports, trace_id, purchase_shape(**shape)
    )
    return spans


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    (found,) = [s for s in spans if label(s) == name]
    return found


async def test_the_first_purchase_also_asks_the_provider_for_a_token(quiet: Quiet) -> None:
    spans = await settled(quiet.running, quiet.first_trace_id, token_fetched=True)
    token = one(spans, "mpesa-simulator: GET /oauth/v1/generate")
    assert token.attributes["http.response.status_code"] == 200


async def test_one_trace_covers_every_span_of_a_purchase_with_its_parent(quiet: Quiet) -> None:
    running = quiet.running
    trip = await running.next_trip()
    status, body, headers = await running.place_order(trip["trip_id"])
    assert status == 202
    trace_id = headers["X-Trace-Id"]
    assert headers["traceparent"].split("-")[1] == trace_id

    # Every span exactly once under its parent, the provider's callback included: the
    # simulator's request → payment's callback endpoint, which handle_callback links to.
    spans = await settled(running, trace_id)

    by_id = {s.span_id: s for s in spans}
    assert (await running.order(body["order_id"]))["status"] == "CONFIRMED"
    publish = one(spans, "ticketing: publish safiri.events")
    assert publish.attributes["messaging.rabbitmq.destination.routing_key"] == "payment.requested"
    publish = one(spans, "payment: publish safiri.events")
    assert publish.attributes["messaging.rabbitmq.destination.routing_key"] == "payment.succeeded"
    for consumer in (
        "payment: process payment.requests",
        "ticketing: process ticketing.payment-results",
    ):
        assert one(spans, consumer).attributes["safiri.message.redelivered"] is False
    callback = one(spans, "payment: handle_callback")
    assert callback.attributes["safiri.order.id"] == body["order_id"]
    assert callback.attributes["safiri.payment.result_code"] == 0
    (link,) = callback.links
    request = by_id[link[1]]
    assert request.attributes["http.response.status_code"] == 200
    assert request.start_ns <= callback.start_ns and callback.end_ns <= request.end_ns
    assert one(spans, "ticketing: hold_seats").attributes["safiri.order.id"] == body["order_id"]
    assert not [label(s) for s in spans if s.is_error]
    print(f"\ntrace of a purchase, as exported ({len(spans)} spans):")
    for span in spans:
        print(f"  {label(span)}")


async def test_a_failed_payments_trace_marks_the_failure(quiet: Quiet) -> None:
    running = quiet.running
    trip = await running.next_trip("Nairobi", "Eldoret")
    status, body, headers = await running.place_order(trip["trip_id"], phone="254700001037")
    assert status == 202

    spans = await settled(running, headers["X-Trace-Id"], succeeded=False)

    assert (await running.order(body["order_id"]))["status"] == "PAYMENT_FAILED"
    callback = one(spans, "payment: handle_callback")
    assert callback.attributes["safiri.payment.result_code"] == 1037
    assert callback.status_message == "ResultCode 1037: DS timeout user cannot be reached"
    release = one(spans, "ticketing: release_seats")
    assert release.attributes["safiri.order.id"] == body["order_id"]
    assert [label(s) for s in spans if s.is_error] == ["payment: handle_callback"]


@pytest_asyncio.fixture
async def fails_once(quiet: Quiet) -> AsyncIterator[str]:
    """A trip of its own whose first confirmation fails in ticketing's database, once.

    A sequence counts the attempts: unlike a table it is not rolled back with the failing
    transaction. The error is not one the consumer retries in place, so the payment result
    is requeued and the broker delivers it again, flagged as redelivered.
    """
    running = quiet.running
    trip_id = await running.add_trip(seats=2)
    conn = await asyncpg.connect(running.config.database_url("ticketing"))
    try:
        await conn.execute(
            "CREATE SEQUENCE test_confirm_attempts;"
            "CREATE FUNCTION test_fail_first_confirm() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN"
            "  IF nextval('test_confirm_attempts') = 1 THEN"
            "   RAISE EXCEPTION 'injected: first confirmation fails';"
            "  END IF;"
            "  RETURN NEW;"
            " END $$;"
            "CREATE TRIGGER test_fail_first_confirm BEFORE UPDATE ON orders FOR EACH ROW"
            f" WHEN (NEW.trip_id = '{trip_id}'::uuid AND NEW.status = 'CONFIRMED')"
            " EXECUTE FUNCTION test_fail_first_confirm()"
        )
        yield trip_id
    finally:
        await conn.execute(
            "DROP TRIGGER IF EXISTS test_fail_first_confirm ON orders;"
            "DROP FUNCTION IF EXISTS test_fail_first_confirm();"
            "DROP SEQUENCE IF EXISTS test_confirm_attempts"
        )
        await conn.close()


async def test_a_redelivered_payment_result_shows_as_one_more_span_of_each(
    quiet: Quiet, fails_once: str
) -> None:
    running = quiet.running
    queue = "ticketing.payment-results"
    redelivered = "messaging_client_redelivered_messages_total"
    before = await running.metric("ticketing", redelivered, messaging_destination_name=queue)
    status, body, headers = await running.place_order(fails_once)
    assert status == 202, body

    spans = await settled(running, headers["X-Trace-Id"], result_redeliveries=1)

    first, again = [s for s in spans if label(s) == f"ticketing: process {queue}"]
    assert first.attributes["safiri.message.redelivered"] is False
    assert again.attributes["safiri.message.redelivered"] is True
    assert again.start_ns >= first.end_ns
    assert first.attributes["messaging.message.id"] == again.attributes["messaging.message.id"]
    failed, confirmed = [s for s in spans if label(s) == "ticketing: confirm_order"]
    assert (failed.parent_span_id, confirmed.parent_span_id) == (first.span_id, again.span_id)
    assert failed.is_error and "injected: first confirmation fails" in failed.status_message
    assert not confirmed.is_error
    after = await running.metric("ticketing", redelivered, messaging_destination_name=queue)
    assert after == before + 1
    order = await running.order(body["order_id"])
    assert order["status"] == "CONFIRMED"
    assert len(order["tickets"]) == 1


async def test_every_log_line_written_during_a_purchase_carries_its_trace(quiet: Quiet) -> None:
    """Whatever any of the four processes logs while the purchase is handled, bound to the
    order or not, carries the purchase's trace id and the id of one of its spans."""
    running = quiet.running
    trip = await running.next_trip("Nakuru", "Nairobi")
    offsets = {service: running.log_size(service) for service in SERVICES}
    status, _body, headers = await running.place_order(trip["trip_id"])
    assert status == 202
    trace_id = headers["X-Trace-Id"]
    # Nothing else is asked of the suite until the trace is whole: no order polling, whose
    # requests would log in traces of their own. The barrier's /healthz lines close the window.
    spans, marks = await settled_trace(
        running.http, running.spans, running.ports, trace_id, purchase_shape()
    )

    span_ids = {s.span_id for s in spans}
    written: dict[str, list[dict[str, Any]]] = {}
    for service in SERVICES:
        lines = running.log_lines(service, since=offsets[service])
        ends = [i for i, line in enumerate(lines) if line.get("trace_id") == marks[service]]
        assert ends, f"{service} did not log the barrier's request"
        written[service] = lines[: ends[0]]
    for service, lines in written.items():
        assert lines, f"{service} logged nothing during the purchase"
        for line in lines:
            assert line.get("trace_id") == trace_id, (service, line)
            assert line.get("span_id") in span_ids, (service, line)
    messages = {service: {line["message"] for line in lines} for service, lines in written.items()}
    assert "order final" in messages["ticketing"]
    assert "mpesa callback delivered" in messages["mpesa-simulator"]
    print(f"\nlog lines of trace {trace_id}:")
    for service, lines in written.items():
        for line in lines:
            print(f"  {service:16} {line['level']:8} {line['message']}")
    raw = "".join(str(lines) for lines in written.values())
    assert running.api_key not in raw
    assert PHONE not in raw


async def test_no_exported_span_carries_a_secret_or_a_phone_number(running: Running) -> None:
    trip = await running.next_trip("Mombasa", "Nairobi")
    status, body, _headers = await running.place_order(trip["trip_id"], phone=PHONE)
    assert status == 202
    await running.final_order(body["order_id"])
    await barrier(running.http, running.spans, running.ports)
    pin = "pin-4711-secret"
    async with running.http.post(
        running.url("gateway", "/api/v1/orders"),
        json={"trip_id": trip["trip_id"], "seat_count": 1, "phone": PHONE, "pin": pin},
        headers={**running.auth, "Idempotency-Key": "pin-test", "X-Mpesa-Pin": pin},
    ) as response:
        assert response.status == 422
        assert pin not in await response.text()

    def leaked(value: object) -> bool:
        text = str(value)
        return any(s in text for s in ("token=", running.api_key, PHONE, "Bearer", pin))

    log_leaks = [
        (record.service, record.body, record.attributes)
        for record in running.spans.logs
        if leaked(record.body) or leaked(record.attributes)
    ]
    assert log_leaks == []
    for service in SERVICES:
        assert not leaked((running.suite.log_path(service) or Path()).read_text())

    leaks = [
        (span.service, span.name, key, value)
        for span in running.spans.spans
        for key, value in span.attributes.items()
        if leaked(value)
    ]
    assert leaks == []


async def test_each_services_log_lines_reach_the_otlp_endpoint_in_the_trace(
    running: Running,
) -> None:
    trip = await running.next_trip("Nairobi", "Kisumu")
    status, body, headers = await running.place_order(trip["trip_id"])
    assert status == 202
    await running.final_order(body["order_id"])
    trace_id = headers["X-Trace-Id"]

    async def from_every_service() -> set[str] | None:
        services = {line.service for line in running.spans.logs_of(trace_id)}
        return services if services >= set(SERVICES) else None

    await eventually(from_every_service, what="OTLP log records from every service")
    records = running.spans.logs_of(trace_id)
    assert all(r.span_id for r in records)
    held = [r for r in records if r.body == "seats held"]
    assert held
    assert held[0].attributes["order_id"] == body["order_id"]
    assert held[0].severity == "INFO"
    assert all(PHONE not in str(r.attributes) for r in records)
    # They were printed by the services and shipped from their log files by the supervisor
    # (safiri_suite.logship): no service exported a log record itself.
    assert running.config.ships_logs
    assert running.config.env()["OTEL_LOGS_EXPORTER"] == "none"
    assert running.suite.log_shipper is not None
    assert running.suite.log_shipper.shipped >= len(records)

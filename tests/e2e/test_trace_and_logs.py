"""One trace follows a purchase across every service; every log line carries it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from safiri.otlp import ReceivedSpan
from tests.conftest import eventually

from .conftest import Running

pytestmark = pytest.mark.e2e

SERVICES = {"gateway", "ticketing", "payment", "mpesa-simulator"}


def _by_name(spans: list[ReceivedSpan], service: str, name: str) -> ReceivedSpan:
    found = [s for s in spans if s.service == service and s.name == name]
    assert found, f"no span {name!r} from {service}; have {[(s.service, s.name) for s in spans]}"
    return found[0]


async def _complete_trace(running: Running, trace_id: str) -> list[ReceivedSpan]:
    async def probe() -> list[ReceivedSpan] | None:
        spans = running.spans.trace(trace_id)
        ids = {s.span_id for s in spans}
        services = {s.service for s in spans}
        settled = any(s.name == "confirm_order" or s.name == "release_seats" for s in spans)
        whole = all(s.parent_span_id is None or s.parent_span_id in ids for s in spans)
        return spans if services >= SERVICES and settled and whole else None

    return await eventually(probe, timeout=20, what=f"the whole trace {trace_id}")


async def test_one_trace_covers_gateway_ticketing_payment_and_the_simulator(
    running: Running,
) -> None:
    trip = await running.next_trip()
    status, body, headers = await running.place_order(trip["trip_id"])
    assert status == 202
    trace_id = headers["X-Trace-Id"]
    assert headers["traceparent"].split("-")[1] == trace_id
    await running.final_order(body["order_id"])

    spans = await _complete_trace(running, trace_id)

    roots = [s for s in spans if s.parent_span_id is None]
    assert [(r.service, r.name) for r in roots] == [("gateway", "POST /api/v1/orders")]
    by_id = {s.span_id: s for s in spans}
    # Consumer spans are children of the producer spans that published their messages.
    payment_consume = _by_name(spans, "payment", "process payment.requests")
    producer = by_id[payment_consume.parent_span_id or ""]
    assert (producer.service, producer.name) == ("ticketing", "publish safiri.events")
    assert producer.attributes["messaging.rabbitmq.destination.routing_key"] == "payment.requested"
    ticketing_consume = _by_name(spans, "ticketing", "process ticketing.payment-results")
    producer = by_id[ticketing_consume.parent_span_id or ""]
    assert (producer.service, producer.name) == ("payment", "publish safiri.events")
    # The provider's callback is handled inside the purchase's trace.
    callback = _by_name(spans, "payment", "handle_callback")
    assert callback.attributes["safiri.order.id"] == body["order_id"]
    assert callback.attributes["safiri.payment.result_code"] == 0
    stk = _by_name(spans, "mpesa-simulator", "POST /mpesa/stkpush/v1/processrequest")
    assert by_id[stk.parent_span_id or ""].service == "payment"
    hold = _by_name(spans, "ticketing", "hold_seats")
    assert hold.attributes["safiri.order.id"] == body["order_id"]
    print("\ntrace of a purchase, as exported:")
    for span in spans:
        print(f"  {span.service:16} {span.name}")


async def test_a_failed_payments_trace_marks_the_failure(running: Running) -> None:
    trip = await running.next_trip("Nairobi", "Eldoret")
    status, body, headers = await running.place_order(trip["trip_id"], phone="254700001037")
    assert status == 202
    await running.final_order(body["order_id"])

    spans = await _complete_trace(running, headers["X-Trace-Id"])

    callback = _by_name(spans, "payment", "handle_callback")
    assert callback.attributes["safiri.payment.result_code"] == 1037
    assert callback.is_error
    assert callback.status_message == "ResultCode 1037: DS timeout user cannot be reached"
    release = _by_name(spans, "ticketing", "release_seats")
    assert release.attributes["safiri.order.id"] == body["order_id"]


async def test_every_log_line_of_a_purchase_is_json_with_its_trace_id(running: Running) -> None:
    trip = await running.next_trip("Nakuru", "Nairobi")
    status, body, headers = await running.place_order(trip["trip_id"])
    assert status == 202
    await running.final_order(body["order_id"])
    await _complete_trace(running, headers["X-Trace-Id"])
    order_id = body["order_id"]

    def lines_of_order() -> dict[str, list[dict[str, Any]]]:
        return {
            service: [ln for ln in running.log_lines(service) if ln.get("order_id") == order_id]
            for service in ("gateway", "ticketing", "payment")
        }

    found = await eventually(
        lambda: _all_present(lines_of_order()), what="log lines from every service"
    )
    for service, lines in found.items():
        for line in lines:
            assert line["trace_id"] == headers["X-Trace-Id"], (service, line)
            assert line["span_id"]
    raw = "".join(
        (running.suite.log_path(s) or "").read_text()  # type: ignore[union-attr]
        for s in ("gateway", "ticketing", "payment", "mpesa-simulator")
    )
    assert running.api_key not in raw
    assert "254712345678" not in raw


async def _all_present(
    lines: dict[str, list[dict[str, Any]]],
) -> dict[str, list[dict[str, Any]]] | None:
    return lines if all(lines.values()) else None


async def test_no_exported_span_carries_a_secret_or_a_phone_number(running: Running) -> None:
    trip = await running.next_trip("Mombasa", "Nairobi")
    status, body, headers = await running.place_order(trip["trip_id"], phone="254712345678")
    assert status == 202
    await running.final_order(body["order_id"])
    await _complete_trace(running, headers["X-Trace-Id"])
    pin = "pin-4711-secret"
    async with running.http.post(
        running.url("gateway", "/api/v1/orders"),
        json={"trip_id": trip["trip_id"], "seat_count": 1, "phone": "254712345678", "pin": pin},
        headers={**running.auth, "Idempotency-Key": "pin-test", "X-Mpesa-Pin": pin},
    ) as response:
        assert response.status == 422
        assert pin not in await response.text()

    def leaked(value: object) -> bool:
        text = str(value)
        return any(s in text for s in ("token=", running.api_key, "254712345678", "Bearer", pin))

    log_leaks = [
        (record.service, record.body, record.attributes)
        for record in running.spans.logs
        if leaked(record.body) or leaked(record.attributes)
    ]
    assert log_leaks == []
    for service in ("gateway", "ticketing", "payment", "mpesa-simulator"):
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
        return services if services >= {"gateway", "ticketing", "payment"} else None

    await eventually(from_every_service, what="OTLP log records from every service")
    records = running.spans.logs_of(trace_id)
    assert all(r.span_id for r in records)
    held = [r for r in records if r.body == "seats held"]
    assert held
    assert held[0].attributes["order_id"] == body["order_id"]
    assert held[0].severity == "INFO"
    assert all("254712345678" not in str(r.attributes) for r in records)

"""Failed, refused or succeeded: a client's mistake or a business refusal is no failure, and a
probe is no order."""

from __future__ import annotations

from typing import Any

import pytest

from safiri_tracestore.model import SpanRow, TraceView
from safiri_tracestore.terminal import render_trace
from safiri_tracestore.waterfall import root_cause, summarise, waterfall
from tests.unit.test_tracestore_waterfall import TRACE, failed_payment, span

pytestmark = pytest.mark.unit

SERVER, CLIENT = 2, 3
TRIP = {"safiri.trip.id": "t-1", "safiri.seat_count": 2}
SOLD_OUT = "2 seats asked, 0 free on trip t-1"


def http(status: int, **attributes: Any) -> dict[str, Any]:
    return {"http.response.status_code": status, **attributes}


def refused_purchase(*, answered: int = 409, marked: bool = True) -> list[SpanRow]:
    """Seats unavailable, as the services export it: ticketing's ``hold_seats`` raises a
    refusal, its server answers ``answered``, the gateway's client span of that answer is an
    error (HTTP conventions) and the gateway answers the client the same. ``marked``: the
    step is recorded as refused (``business_span(refusals=...)``); unmarked, it is an error
    span, as before the services declared their refusals."""
    refusal = (
        {
            "attributes": {**TRIP, "safiri.outcome": "refused"},
            "events": [
                {
                    "name": "refused",
                    "time_ns": 0,
                    "attributes": {
                        "safiri.refusal.reason": "SeatsUnavailable",
                        "safiri.refusal.message": SOLD_OUT,
                    },
                }
            ],
        }
        if marked
        else {
            "attributes": TRIP,
            "status_code": 2,
            "status_message": f"SeatsUnavailable: {SOLD_OUT}",
        }
    )
    return [
        span("a1", None, "gateway", "POST /api/v1/orders", 0, 20, kind=SERVER,
             attributes=http(answered)),
        span("b1", "a1", "gateway", "claim_idempotency_key", 1, 2, attributes=TRIP),
        span("c1", "a1", "gateway", "request_order", 3, 18, attributes=TRIP),
        span("d1", "c1", "gateway", "POST", 4, 17, kind=CLIENT, status_code=2,
             attributes=http(answered)),
        span("e1", "d1", "ticketing", "POST /orders", 5, 16, kind=SERVER,
             attributes=http(answered)),
        span("f1", "e1", "ticketing", "hold_seats", 6, 15, **refusal),
    ]  # fmt: skip


def readyz_probe() -> list[SpanRow]:
    """A start-up readiness probe answered 503: the database was not reachable yet."""
    return [
        span("a1", None, "ticketing", "GET /readyz", 0, 3, kind=SERVER, status_code=2,
             attributes=http(503, **{"http.route": "/readyz"})),
    ]  # fmt: skip


@pytest.mark.parametrize("marked", [True, False], ids=["refused-step", "error-step"])
@pytest.mark.parametrize("answered", [409, 404], ids=["seats-unavailable", "unknown-trip"])
def test_a_refused_purchase_is_refused_not_failed_and_has_no_root_cause(
    marked: bool, answered: int
) -> None:
    spans = refused_purchase(answered=answered, marked=marked)
    assert root_cause(spans) is None
    summary = summarise(TRACE, spans)
    assert (summary.outcome, summary.purchase, summary.error_count) == ("refused", True, 0)
    assert summary.root_cause is None
    assert summary.refusal is not None
    assert (summary.refusal.service, summary.refusal.name) == ("ticketing", "hold_seats")
    assert summary.refusal.cause == f"SeatsUnavailable: {SOLD_OUT}"


def test_a_refused_purchase_has_no_failure_marks_and_says_who_said_no() -> None:
    rows = waterfall(refused_purchase())
    assert {r.span.name: r.mark for r in rows if r.mark} == {
        "POST /api/v1/orders": "refused",
        "POST": "refused",
        "POST /orders": "refused",
        "hold_seats": "refused",
    }
    text = render_trace(TraceView([TRACE], refused_purchase(), []), colour=False)
    assert "✗" not in text and "root cause: no failing span" not in text
    assert f"refused, not a failure: ticketing → hold_seats: SeatsUnavailable: {SOLD_OUT}" in text
    assert any(line.startswith("  ⊘ said no: ") for line in text.splitlines())


def test_a_bad_request_the_gateway_answers_4xx_is_a_refused_purchase() -> None:
    spans = [
        span("a1", None, "gateway", "POST /api/v1/orders", 0, 2, kind=SERVER, attributes=http(422))
    ]
    summary = summarise(TRACE, spans)
    assert (summary.outcome, summary.purchase, summary.root_cause) == ("refused", True, None)
    assert summary.refusal is not None and summary.refusal.cause == "answered 422"


def test_a_readyz_probe_error_is_a_failure_but_no_order() -> None:
    summary = summarise(TRACE, readyz_probe())
    assert (summary.outcome, summary.purchase) == ("failed", False)
    assert summary.root_cause is not None
    assert summary.root_cause.line() == "ticketing → GET /readyz: answered 503"


def test_a_failed_payment_is_still_failed_with_the_same_root_cause() -> None:
    summary = summarise(TRACE, failed_payment())
    assert (summary.outcome, summary.purchase, summary.refusal) == ("failed", True, None)
    assert summary.root_cause is not None
    assert summary.root_cause.line() == (
        "payment → handle_callback: ResultCode 1037: DS timeout user cannot be reached"
    )


def test_a_client_span_of_a_4xx_answer_is_never_the_root_cause() -> None:
    """The gateway's call answered 404 by a misrouted ticketing, and the gateway answered
    502: the failure is the gateway's answer, not the 404 its client span reflects."""
    spans = [
        span("a1", None, "gateway", "POST /api/v1/orders", 0, 9, kind=SERVER, status_code=2,
             attributes=http(502)),
        span("b1", "a1", "gateway", "request_order", 1, 8, attributes=TRIP),
        span("c1", "b1", "gateway", "POST", 2, 7, kind=CLIENT, status_code=2,
             attributes=http(404)),
    ]  # fmt: skip
    cause = root_cause(spans)
    assert cause is not None and cause.line() == "gateway → POST /api/v1/orders: answered 502"
    assert summarise(TRACE, spans).outcome == "failed"


def test_a_server_error_under_a_refusal_elsewhere_is_still_a_failure() -> None:
    """Ticketing failed (500) while the gateway's idempotency claim had answered 409 to an
    earlier copy: one real server error makes the trace failed, whatever else said no."""
    spans = refused_purchase()
    spans[4] = span("e1", "d1", "ticketing", "POST /orders", 5, 16, kind=SERVER, status_code=2,
                    attributes=http(500))  # fmt: skip
    spans[5] = span("f1", "e1", "ticketing", "hold_seats", 6, 15, status_code=2,
                    status_message="PostgresConnectionError: gone", attributes=TRIP)  # fmt: skip
    summary = summarise(TRACE, spans)
    assert summary.outcome == "failed" and summary.refusal is None
    assert summary.root_cause is not None
    assert summary.root_cause.line() == "ticketing → hold_seats: PostgresConnectionError: gone"


def test_a_trace_with_neither_is_succeeded() -> None:
    summary = summarise(TRACE, [span("a1", None, "gateway", "GET /api/v1/trips", 0, 1)])
    assert (summary.outcome, summary.purchase, summary.root_cause) == ("succeeded", False, None)

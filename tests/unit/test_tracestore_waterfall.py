"""The waterfall tree, the root cause a person should look at first, and the CLI's rendering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from safiri_tracestore.model import LogRow, SpanRow, TraceView
from safiri_tracestore.terminal import render_trace, trace_document
from safiri_tracestore.waterfall import root_cause, summarise, waterfall

pytestmark = pytest.mark.unit

TRACE = "86eb6b9bdf6f8c51aa7eb7c988a82f4b"
MS = 1_000_000


def span(
    span_id: str,
    parent: str | None,
    service: str,
    name: str,
    start_ms: float,
    end_ms: float,
    **extra: Any,
) -> SpanRow:
    return SpanRow(
        trace_id=TRACE,
        span_id=span_id.ljust(16, "0"),
        parent_span_id=parent.ljust(16, "0") if parent else None,
        service=service,
        name=name,
        kind=extra.pop("kind", 1),
        start_ns=int(1_000 * MS + start_ms * MS),
        end_ns=int(1_000 * MS + end_ms * MS),
        status_code=extra.pop("status_code", 0),
        status_message=extra.pop("status_message", ""),
        **extra,
    )


def failed_payment() -> list[SpanRow]:
    spans = [
        span("a1", None, "gateway", "POST /api/v1/orders", 0, 20),
        span("b1", "a1", "ticketing", "hold_seats", 3, 12, attributes={"safiri.order.id": "o-1"}),
        span("c1", "b1", "payment", "request_payment", 14, 30),
        span("d1", "c1", "mpesa-simulator", "POST /mpesa/stkpush", 16, 25),
        span(
            "e1",
            "c1",
            "payment",
            "handle_callback",
            40,
            45,
            status_code=2,
            status_message="ResultCode 1037: DS timeout user cannot be reached",
            attributes={"safiri.order.id": "o-1", "safiri.payment.result_code": 1037},
        ),
        span("f1", "e1", "ticketing", "release_seats", 50, 52),
    ]
    return list(reversed(spans))  # arrival order is not display order


def test_the_tree_is_depth_first_in_start_order_with_offsets_from_the_first_span() -> None:
    rows = waterfall(failed_payment())
    assert [(r.span.name, r.depth) for r in rows] == [
        ("POST /api/v1/orders", 0),
        ("hold_seats", 1),
        ("request_payment", 2),
        ("POST /mpesa/stkpush", 3),
        ("handle_callback", 3),
        ("release_seats", 4),
    ]
    assert [r.offset_ns // MS for r in rows] == [0, 3, 14, 16, 40, 50]


def test_a_mark_is_a_spans_own_status_not_the_path_to_the_failure() -> None:
    rows = waterfall(failed_payment())
    assert [(r.span.name, r.mark) for r in rows if r.mark] == [("handle_callback", "failed")]
    assert [r.span.name for r in rows if r.is_root_cause] == ["handle_callback"]


def test_a_span_whose_parent_never_arrived_is_shown_as_a_root() -> None:
    spans = [span("a1", "zz", "gateway", "orphan", 5, 6), span("b1", None, "payment", "root", 0, 9)]
    assert [(r.span.name, r.depth) for r in waterfall(spans)] == [("root", 0), ("orphan", 0)]


def test_a_parent_cycle_in_bad_input_does_not_loop_forever() -> None:
    spans = [span("a1", "b1", "x", "a", 0, 1), span("b1", "a1", "x", "b", 1, 2)]
    assert sorted(r.span.name for r in waterfall(spans)) == ["a", "b"]


def test_the_root_cause_is_the_deepest_failing_span() -> None:
    spans = failed_payment()
    spans.append(span("a2", "a1", "gateway", "shallow failure", 1, 2, status_code=2))
    cause = root_cause(spans)
    assert cause is not None
    assert cause.line() == (
        "payment → handle_callback: ResultCode 1037: DS timeout user cannot be reached"
    )


def test_among_equally_deep_failures_the_earliest_is_the_root_cause() -> None:
    spans = [
        span("a1", None, "gateway", "root", 0, 10),
        span("b1", "a1", "payment", "later", 6, 7, status_code=2, status_message="second"),
        span("b2", "a1", "payment", "earlier", 2, 3, status_code=2, status_message="first"),
    ]
    cause = root_cause(spans)
    assert cause is not None and (cause.name, cause.cause) == ("earlier", "first")


def test_a_failure_without_a_message_is_explained_by_its_result_code_or_exception() -> None:
    by_code = span(
        "a1",
        None,
        "payment",
        "handle_callback",
        0,
        1,
        status_code=2,
        attributes={"safiri.payment.result_code": 1, "safiri.payment.result_desc": "No funds"},
    )
    by_exception = span(
        "b1",
        None,
        "payment",
        "provider.stk_push",
        0,
        1,
        status_code=2,
        events=[
            {
                "name": "exception",
                "time_ns": 0,
                "attributes": {"exception.type": "TimeoutError", "exception.message": "30 s"},
            }
        ],
    )
    assert root_cause([by_code]).cause == "ResultCode 1: No funds"  # type: ignore[union-attr]
    assert root_cause([by_exception]).cause == "TimeoutError: 30 s"  # type: ignore[union-attr]


def test_an_expired_order_is_explained_by_its_expire_hold_span() -> None:
    spans = [
        span("a1", None, "gateway", "POST /api/v1/orders", 0, 5),
        span("b1", "a1", "ticketing", "expire_hold", 9000, 9001),
    ]
    cause = root_cause(spans)
    assert cause is not None and (cause.service, cause.name) == ("ticketing", "expire_hold")
    assert "expired" in cause.cause


def test_a_query_answered_still_processing_is_not_the_root_cause() -> None:
    """Daraja answers an STK query for an unfinished payment with HTTP 500: those spans are
    errors, but the order's story is its expired hold."""
    spans = [
        span("a1", None, "gateway", "POST /api/v1/orders", 0, 5),
        span(
            "r1",
            "a1",
            "payment",
            "reconcile_payment",
            2000,
            2010,
            attributes={"safiri.payment.pending": True},
        ),
        span("q1", "r1", "payment", "POST", 2001, 2009, status_code=2),
        span(
            "s1",
            "q1",
            "mpesa-simulator",
            "POST /mpesa/stkpushquery/v1/query",
            2002,
            2008,
            status_code=2,
        ),
        span("b1", "a1", "ticketing", "expire_hold", 9000, 9001),
    ]
    cause = root_cause(spans)
    assert cause is not None and (cause.service, cause.name) == ("ticketing", "expire_hold")

    # Read mid-reconciliation: the payment service has not exported its spans yet, the
    # simulator's answer (marked) is in, and the client span above it.
    partial = [
        spans[0],
        span("q1", "p1", "payment", "POST", 2001, 2009, status_code=2),
        span(
            "s1",
            "q1",
            "mpesa-simulator",
            "POST /mpesa/stkpushquery/v1/query",
            2002,
            2008,
            status_code=2,
            attributes={"safiri.payment.pending": True},
        ),
        spans[4],
    ]
    cause = root_cause(partial)
    assert cause is not None and cause.name == "expire_hold"

    spans[1] = span("r1", "a1", "payment", "reconcile_payment", 2000, 2010)  # not pending
    cause = root_cause(spans)
    assert cause is not None and cause.name == "POST /mpesa/stkpushquery/v1/query"


def test_a_successful_trace_has_no_root_cause() -> None:
    assert root_cause([span("a1", None, "gateway", "GET /trips", 0, 1)]) is None


def test_a_summary_names_the_root_span_the_order_and_the_failure() -> None:
    summary = summarise(TRACE, failed_payment())
    assert (summary.root_service, summary.root_name) == ("gateway", "POST /api/v1/orders")
    assert (summary.order_id, summary.span_count, summary.error_count) == ("o-1", 6, 1)
    assert summary.duration_ns == 52 * MS
    assert summary.root_cause is not None and summary.root_cause.name == "handle_callback"


def view() -> TraceView:
    logs = [
        LogRow(1_041 * MS, TRACE, "e1".ljust(16, "0"), "payment", "ERROR", "payment settled"),
        LogRow(1_003 * MS, TRACE, "b1".ljust(16, "0"), "ticketing", "INFO", "seats held"),
    ]
    return TraceView([TRACE], failed_payment(), sorted(logs, key=lambda x: x.time_ns), "o-1")


def test_the_terminal_tree_marks_the_error_path_and_ends_with_cause_and_logs() -> None:
    text = render_trace(view(), colour=False)
    lines = text.splitlines()
    assert lines[0].startswith(f"order o-1 · trace {TRACE} · 6 spans")
    assert lines[0].endswith(" · failed order")
    assert lines[1].startswith("  gateway: POST /api/v1/orders")  # it answered 202
    assert any(
        line.startswith("✗       payment: handle_callback")
        and "ERROR ResultCode 1037" in line
        and "+    40.0 ms      5.0 ms" in line
        and line.endswith("◀ root cause")
        for line in lines
    )
    (marked,) = [line for line in lines if line.startswith("✗")]
    assert "payment: handle_callback" in marked
    legend = lines[lines.index("marks:") + 1 :]
    assert legend[0].startswith("  ✗ failed: ") and not legend[1].strip()
    assert any(line.startswith("          ticketing: release_seats") for line in lines)
    assert (
        "root cause: payment → handle_callback: ResultCode 1037: DS timeout user cannot be reached"
        in lines
    )
    logs = lines[lines.index("logs (2):") + 1 :]
    assert "seats held" in logs[0] and "payment settled" in logs[1]
    assert "\x1b[" not in text


def test_colour_is_only_added_when_asked_for() -> None:
    assert "\x1b[31m" in render_trace(view(), colour=True)


def test_a_trace_without_failure_says_so() -> None:
    ok = TraceView([TRACE], [span("a1", None, "gateway", "GET /trips", 0, 1)], [])
    assert "root cause: no failing span" in render_trace(ok, colour=False).splitlines()


def test_the_json_document_carries_tree_positions_and_the_root_cause() -> None:
    document = json.loads(json.dumps(trace_document(view())))
    assert document["trace_id"] == TRACE and document["order_id"] == "o-1"
    assert document["root_cause"]["name"] == "handle_callback"
    assert document["root_cause"]["line"].startswith("payment → handle_callback: ResultCode 1037")
    first = document["spans"][0]
    assert (first["name"], first["depth"], first["offset_ms"]) == ("POST /api/v1/orders", 0, 0)
    assert document["outcome"] == "failed" and document["purchase"] is True
    assert document["refusal"] is None
    assert [(s["name"], s["mark"]) for s in document["spans"] if s["mark"]] == [
        ("handle_callback", "failed")
    ]
    assert [entry["body"] for entry in document["logs"]] == ["seats held", "payment settled"]

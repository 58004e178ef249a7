"""The HTML pages: a waterfall that draws every span, and nothing a client sent runs as markup."""

from __future__ import annotations

import re

import pytest

from safiri_tracestore.html_page import index_html
from safiri_tracestore.html_waterfall import trace_html
from safiri_tracestore.model import LogRow, TraceView
from safiri_tracestore.params import RecentQuery
from safiri_tracestore.waterfall import summarise
from tests.unit.test_tracestore_waterfall import MS, TRACE, failed_payment, span

pytestmark = pytest.mark.unit

EVIL = '<script>alert("x")</script>'


def page_of(view: TraceView) -> str:
    return trace_html(view)


def test_every_span_is_a_row_with_its_bar_placed_by_start_and_sized_by_duration() -> None:
    html = page_of(TraceView([TRACE], failed_payment(), [], "o-1"))
    for name in ("POST /api/v1/orders", "hold_seats", "handle_callback", "release_seats"):
        assert f">{name}<" in html
    # handle_callback starts 40 ms into a 52 ms trace and lasts 5 ms
    row = re.search(r'<tr id="span-e1[0-9]*" class="error">.*?</tr>', html)
    assert row is not None
    assert "left:76.923%;width:9.615%" in row.group(0)
    assert "ResultCode 1037: DS timeout user cannot be reached" in row.group(0)
    assert "padding-left:56px" in row.group(0)  # depth 3
    assert "root cause: payment → handle_callback" in html


def test_span_links_point_at_the_linked_span() -> None:
    spans = failed_payment()
    incoming = span("c9", None, "payment", "POST /callbacks/mpesa/{payment_id}", 38, 46)
    linked = span(
        "e9",
        "c1",
        "payment",
        "handle_callback",
        40,
        45,
        links=[
            {"trace_id": TRACE, "span_id": incoming.span_id, "attributes": {}},
            {"trace_id": "ab" * 16, "span_id": "cd" * 8, "attributes": {}},
        ],
    )
    html = page_of(TraceView([TRACE], [*spans, incoming, linked], []))
    assert f'<a href="#span-{incoming.span_id}">payment: POST /callbacks' in html
    assert f'<a href="/traces/{"ab" * 16}#span-{"cd" * 8}">' in html


def test_log_lines_follow_the_waterfall_in_time_order() -> None:
    logs = [
        LogRow(1_003 * MS, TRACE, None, "ticketing", "INFO", "seats held"),
        LogRow(1_041 * MS, TRACE, "e1".ljust(16, "0"), "payment", "ERROR", "payment settled"),
    ]
    html = page_of(TraceView([TRACE], failed_payment(), logs))
    assert html.index("Log lines (2)") < html.index("seats held") < html.index("payment settled")


def test_everything_a_client_sent_is_escaped() -> None:
    hostile = span(
        "a1",
        None,
        EVIL,
        EVIL,
        0,
        1,
        status_code=2,
        status_message=EVIL,
        attributes={EVIL: EVIL, "n": [EVIL]},
        links=[{"trace_id": EVIL, "span_id": '"><img src=x onerror=alert(1)>', "attributes": {}}],
    )
    logs = [LogRow(0, TRACE, '"><b>', EVIL, EVIL, EVIL)]
    html = page_of(TraceView([TRACE], [hostile], logs, order_id=EVIL))
    assert "<script>" not in html and "<img" not in html and '"><b>' not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    summary = summarise(TRACE, [hostile])
    listing = index_html([summary], RecentQuery())
    assert "<script>" not in listing and "&lt;script&gt;" in listing


def test_the_pages_need_nothing_from_outside() -> None:
    html = page_of(TraceView([TRACE], failed_payment(), []))
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert "<style>" in html


def test_the_list_puts_a_failed_trace_first_with_its_root_cause() -> None:
    failed = summarise(TRACE, failed_payment())
    ok = summarise("1" * 32, [span("z1", None, "gateway", "GET /trips", 0, 1)])
    html = index_html([failed, ok], RecentQuery())
    assert html.index(TRACE) < html.index("1" * 32)
    assert f'href="/traces/{TRACE}"' in html
    assert "payment → handle_callback: ResultCode 1037" in html

"""The trace UI's search: the box's syntax, the filters' parameters, the SQL they become."""

from __future__ import annotations

import pytest

from safiri_tracestore.database import Search as Narrowing
from safiri_tracestore.database import candidate_query
from safiri_tracestore.html_page import index_html
from safiri_tracestore.html_waterfall import trace_html
from safiri_tracestore.model import LogRow, Outcome, TraceView
from safiri_tracestore.params import RecentQuery
from safiri_tracestore.search import Search, parse_search, parse_time
from safiri_tracestore.waterfall import summarise
from tests.unit.test_tracestore_html import EVIL
from tests.unit.test_tracestore_waterfall import TRACE, failed_payment

pytestmark = pytest.mark.unit

ORDER = "56d8b732-1c4e-4f7a-9d1e-0a2b3c4d5e6f"


def test_an_id_in_the_box_goes_straight_to_its_trace() -> None:
    assert parse_search(f"  {ORDER.upper()} ").target == f"/orders/{ORDER}"
    assert parse_search(f"order={ORDER}").target == f"/orders/{ORDER}"
    assert parse_search(TRACE.upper()).target == f"/traces/{TRACE}"
    assert parse_search(f"trace={TRACE}").target == f"/traces/{TRACE}"
    assert parse_search("").target is None


def test_attribute_terms_are_safiri_names_with_exact_values() -> None:
    search = parse_search('safiri.payment.result_code=1032 safiri.trip.id="a b=c"')
    assert search == Search(
        attributes=(("safiri.payment.result_code", "1032"), ("safiri.trip.id", "a b=c"))
    )
    query = RecentQuery.from_params({"q": "safiri.payment.result_code=1032 safiri.x='a b'"})
    assert RecentQuery.from_params(query.to_params()) == query


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("hello", "is not an order id"),
        ("http.route=/x", "is not an order id"),
        ("safiri.trip.id=", "is not an order id"),
        (f"order={TRACE}", "is not an order id"),
        (f"{ORDER} safiri.trip.id=1", "stands alone"),
        (f"{ORDER} {TRACE}", "stands alone"),
        ('safiri.x="open', "quotation"),
        (" ".join(f"safiri.k{i}=1" for i in range(9)), "at most 8"),
        ("x" * 1001, "longer than"),
    ],
)
def test_the_box_refuses_what_it_cannot_search(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_search(text)


def test_the_filters_read_strictly_and_round_trip() -> None:
    query = RecentQuery.from_params(
        {
            "q": "safiri.payment.result_code=1037",
            "service": "payment",
            "outcome": "failed",
            "purchases": "",  # the form's "orders with an outcome"
            "min_duration": "250ms",
            "from": "2025-05-01T10:00",
            "to": "2025-05-01T14:00:00.5+03:00",
        }
    )
    assert (query.service, query.min_duration_s, query.purchases) == ("payment", 0.25, True)
    assert query.from_ns == parse_time("2025-05-01T10:00:00Z") == 1_746_093_600 * 10**9
    assert query.to_ns == 1_746_097_200 * 10**9 + 500_000_000
    assert query.window_ns == (query.from_ns, query.to_ns)
    assert RecentQuery.from_params(query.to_params()) == query
    empty = {k: "" for k in ("q", "service", "min_duration", "since", "from", "to", "limit")}
    assert RecentQuery.from_params(empty) == RecentQuery()
    for bad in (
        {"min_duration": "long"},
        {"from": "yesterday"},
        {"to": "2025-13-01"},
        {"from": "2025-05-01T11:00", "to": "2025-05-01T10:00"},
        {"q": ORDER},
        {"service": "s" * 201},
    ):
        with pytest.raises(ValueError, match=r"min_duration|from|to|q: an id|service"):
            RecentQuery.from_params(bad)


def test_the_window_ends_at_to_and_reaches_back_since_without_from() -> None:
    query = RecentQuery.from_params({"to": "2025-05-01T11:00", "since": "10m"})
    assert query.window_ns == (query.to_ns - 600 * 10**9, query.to_ns)  # type: ignore[operator]


def test_user_values_reach_sqlite_only_as_parameters() -> None:
    narrowing = Narrowing(7, EVIL, (("safiri.x", EVIL),), 1000)
    for outcome in (None, *Outcome):
        sql, params = candidate_query(1, outcome, True, narrowing)
        assert EVIL not in sql and "alert" not in sql
        assert sql.count("?") == len(params)
        assert params.count(EVIL) == 2 and 1000 in params
        assert "span_attributes" in sql and "INDEXED BY spans_by_service" in sql
    sql, params = candidate_query(1, Outcome.FAILED, None, Narrowing(until_ns=9))
    assert "INDEXED BY spans_failing" in sql and params == [1, 9]


def test_the_list_links_each_order_to_its_trace_and_offers_the_search() -> None:
    failed = summarise(TRACE, failed_payment())
    assert failed.order_id is not None
    html = index_html([failed], RecentQuery(), ["payment", EVIL], {"q": EVIL, "to": EVIL})
    assert f'<a href="/orders/{failed.order_id}"><code>{failed.order_id}</code></a>' in html
    assert '<input name="q" type="search"' in html
    assert '<option value="payment">' in html
    assert "<script>" not in html and html.count("&lt;script&gt;") == 4  # q, to, the option


def test_log_lines_show_their_fields_as_json_values() -> None:
    fields = {"result_code": 1037, "phone": "2547****5678", EVIL: f'say "{EVIL}"\n'}
    logs = [LogRow(0, TRACE, None, "payment", "WARNING", "payment failed", fields)]
    html = trace_html(TraceView([TRACE], failed_payment(), logs))
    assert "<code>result_code=1037</code>" in html
    assert "<code>phone=&quot;2547****5678&quot;</code>" in html
    assert "<script>" not in html
    assert "=&quot;say \\&quot;&lt;script&gt;" in html and "\\n&quot;</code>" in html


def test_every_mark_on_the_page_is_explained_on_it() -> None:
    html = trace_html(TraceView([TRACE], failed_payment(), []))
    legend = html[html.index('<ul class="legend">') : html.index("</ul>")]
    rows = html[html.index("<tbody>") :]
    for mark, meaning in (("✗", "✗ failed"), ("(root cause)", "(root cause)"), ("bar", "bar:")):
        assert mark in rows, mark
        assert meaning in legend, meaning
    assert "log fields" in legend

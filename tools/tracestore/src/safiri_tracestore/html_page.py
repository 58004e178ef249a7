"""The HTML shell (inline CSS, no scripts, no external assets) and the recent-traces list.

Everything that came from a client (names, attributes, messages) goes through ``escape``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from urllib.parse import quote, urlencode

from .model import Outcome, TraceSummary
from .params import RecentQuery

__all__ = ["OUTCOME_CLASS", "clock", "escape", "index_html", "page", "search_form"]
__all__ += ["service_colour"]

OUTCOME_CLASS = {Outcome.FAILED: "error", Outcome.REFUSED: "refused", Outcome.SUCCEEDED: ""}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d1d1f}
h1{font-size:1.3rem}code{font-size:.92em}a{color:#0b57d0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#fafafa;font-weight:600}td.num{text-align:right;white-space:nowrap}
tr.error td,.error-text,.cause.failing{color:#b71c1c}
tr.refused td{color:#8a5a00}.legend{font-size:.9em;color:#555}
tr.error td.name{font-weight:600}
.track{position:relative;height:16px;background:#f4f4f6;min-width:280px}
.bar{position:absolute;top:3px;height:10px;min-width:2px;border-radius:2px}
tr.error .bar{background:#d32f2f!important}
.svc{white-space:nowrap}.svc i{display:inline-block;width:9px;height:9px;margin-right:5px}
.status{font-size:.9em}ul.links{margin:2px 0;padding-left:1.1rem;font-size:.9em}
details{font-size:.85em;color:#555}dl{margin:2px 0}dt{font-weight:600}dd{margin:0 0 2px 1rem}
.cause{font-size:1.05rem;padding:.4rem .6rem;background:#fff4f4;border-left:4px solid #d32f2f}
.cause.none{background:#f4fff4;border-color:#2e7d32}
.cause.refused{background:#fff9ec;border-color:#c77700}
form.search{margin:.6rem 0;display:flex;flex-wrap:wrap;gap:.4rem;align-items:center}
form.search input[name=q]{flex:1 1 28rem;font:inherit;padding:3px 6px}
.fields{font-size:.85em;color:#444}.fields code{margin-right:.6em;word-break:break-all}
.problem{color:#b71c1c;font-weight:600}
"""


def page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def service_colour(service: str) -> str:
    return f"hsl({zlib.crc32(service.encode()) % 360} 55% 52%)"


def clock(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _row(s: TraceSummary) -> str:
    if s.root_cause:
        why = escape(s.root_cause.line())
    elif s.refusal:
        why = f"refused: {escape(s.refusal.line())}"
    else:
        why = ""
    order = (
        f'<a href="/orders/{escape(quote(s.order_id, safe=""))}"><code>{escape(s.order_id)}'
        "</code></a>"
        if s.order_id
        else ""
    )
    return (
        f'<tr class="{OUTCOME_CLASS[s.outcome]}"><td>{clock(s.start_ns)}</td>'
        f'<td><a href="/traces/{escape(s.trace_id)}"><code>{escape(s.trace_id)}</code></a></td>'
        f"<td>{order}</td><td>{escape(s.outcome)}{'' if s.purchase else ' (no order)'}</td>"
        f"<td>{escape(s.root_service)}: {escape(s.root_name)}</td>"
        f'<td class="num">{s.duration_ns / 1e6:.1f} ms</td><td class="num">{s.span_count}</td>'
        f'<td class="num">{s.error_count}</td><td>{why}</td></tr>'
    )


VIEWS = (
    ("all traces", RecentQuery()),
    ("failed orders", RecentQuery.of_orders(Outcome.FAILED)),
    ("refused orders", RecentQuery.of_orders(Outcome.REFUSED)),
    (
        "failing, no order (probes, start-up, searches)",
        RecentQuery(Outcome.FAILED, purchases=False),
    ),
)


def _link(label: str, view: RecentQuery, query: RecentQuery) -> str:
    params = {k: v for k, v in view.to_params().items() if k in ("outcome", "purchases")}
    kept = {k: v for k, v in query.to_params().items() if k in ("since", "from", "to")}
    href = "/?" + urlencode({**params, **kept})
    return f'<a href="{escape(href)}">{escape(label)}</a>'


def _options(name: str, choices: Sequence[tuple[str, str]], chosen: str) -> str:
    options = "".join(
        f'<option value="{escape(value)}"{" selected" if value == chosen else ""}>'
        f"{escape(label)}</option>"
        for value, label in choices
    )
    return f'<select name="{name}" aria-label="{name}">{options}</select>'


def _input(name: str, form: Mapping[str, str], placeholder: str, size: int, kind: str) -> str:
    return (
        f'<label>{escape(name.replace("_", " "))} <input name="{name}" type="{kind}"'
        f' size="{size}" placeholder="{escape(placeholder)}"'
        f' value="{escape(form.get(name, ""))}"></label>'
    )


def search_form(form: Mapping[str, str], services: Sequence[str]) -> str:
    """The search box and filters, filled with what was asked (``form``: the query string)."""
    outcomes = [("any", "any outcome"), *((o.value, o.value) for o in Outcome)]
    purchases = [("", "orders (with an outcome)"), ("true", "orders"), ("false", "no order")]
    purchases.append(("any", "orders and others"))
    return (
        '<form class="search" method="get" action="/">'
        '<input name="q" type="search" aria-label="search"'
        ' placeholder="order id, trace id or safiri.payment.result_code=1032"'
        f' value="{escape(form.get("q", ""))}">'
        + _options("service", [("", "any service"), *((s, s) for s in services)],
                   form.get("service", ""))
        + _options("outcome", outcomes, form.get("outcome", "any").lower())
        + _options("purchases", purchases, form.get("purchases", "").lower())
        + _input("min_duration", form, "500ms", 7, "text")
        + _input("since", form, "1h", 5, "text")
        + _input("from", form, "2025-05-01T10:00", 16, "text")
        + _input("to", form, "now", 16, "text")
        + '<button type="submit">search</button></form>'
    )  # fmt: skip


def _window(query: RecentQuery) -> str:
    if query.from_ns is None and query.to_ns is None:
        return f"last {query.since_s:g} s"
    start, end = query.window_ns
    return f"{clock(start)} to {clock(end) if end is not None else 'now'} UTC"


def index_html(
    summaries: Sequence[TraceSummary],
    query: RecentQuery,
    services: Sequence[str] = (),
    form: Mapping[str, str] | None = None,
    problem: str | None = None,
) -> str:
    rows = "".join(_row(s) for s in summaries) or '<tr><td colspan="9">no traces</td></tr>'
    which = query.title.capitalize()
    order = "failed first" if query.outcome is None else "newest first"
    searched = [f"service {query.service}"] if query.service else []
    searched += [f"{k}={v}" for k, v in query.attributes]
    if query.min_duration_s is not None:
        searched.append(f"at least {query.min_duration_s * 1000:g} ms")
    title = f"{which} ({_window(query)}, {order})"
    if searched:
        title += f" matching {', '.join(searched)}"
    body = (
        f"<h1>{escape(title)}</h1>"
        + search_form(form or {}, services)
        + (f'<p class="problem">{escape(problem)}</p>' if problem else "")
        + f"<p>{' · '.join(_link(label, view, query) for label, view in VIEWS)}</p>"
        '<p class="legend">failed: a purchase that failed (a server error, a failed payment,'
        " an expired hold) · refused: the client or the business said no (a 4xx answer, seats"
        " unavailable, an unknown trip) · (no order): a trace without a purchase (a probe,"
        " start-up, a search) · errors: error spans that count as failures · search: an order"
        " id or a trace id opens its trace; safiri.name=value terms keep the traces with a span"
        " carrying each; times are UTC</p>"
        "<table><thead><tr><th>started (UTC)</th><th>trace</th><th>order</th><th>outcome</th>"
        "<th>root span</th><th>duration</th><th>spans</th><th>errors</th>"
        "<th>root cause or refusal</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return page(f"Safiri — {which.lower()}", body)

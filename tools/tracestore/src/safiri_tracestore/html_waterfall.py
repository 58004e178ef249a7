"""One trace as an HTML waterfall: a row per span, its bar placed on the trace's timeline."""

from __future__ import annotations

import json
from typing import Any

from .html_page import clock, escape, page, service_colour
from .model import LogRow, SpanRow, TraceView
from .outcome import refusal_reason
from .terminal import legend
from .waterfall import Mark, WaterfallRow, verdict, waterfall

__all__ = ["PAGE_LEGEND", "log_fields", "trace_html"]

INDENT_PX = 16


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _links(span: SpanRow, present: dict[str, SpanRow]) -> str:
    items = []
    for link in span.links:
        trace_id, span_id = str(link.get("trace_id")), str(link.get("span_id"))
        target = present.get(span_id)
        if target is not None and target.trace_id == trace_id:
            label = f"{target.service}: {target.name}"
            href = f"#span-{span_id}"
        else:
            label = f"span {span_id} of trace {trace_id}"
            href = f"/traces/{trace_id}#span-{span_id}"
        items.append(f'<li>linked to <a href="{escape(href)}">{escape(label)}</a></li>')
    return f'<ul class="links">{"".join(items)}</ul>' if items else ""


def _attributes(span: SpanRow) -> str:
    if not span.attributes:
        return ""
    pairs = "".join(
        f"<dt>{escape(k)}</dt><dd>{escape(_value(v))}</dd>" for k, v in span.attributes.items()
    )
    return f"<details><summary>attributes</summary><dl>{pairs}</dl></details>"


def _status(row: WaterfallRow) -> str:
    s = row.span
    if row.mark is Mark.FAILED:
        text = s.status_message or ("the hold expired" if not s.is_error else "error")
        cause = " (root cause)" if row.is_root_cause else ""
        return f'<div class="status">✗ {escape(text)}{cause}</div>'
    if row.mark is Mark.REFUSED:
        return f'<div class="status">⊘ refused: {escape(refusal_reason(s))}</div>'
    if row.mark is Mark.EXPECTED:
        return f'<div class="status">~ {escape(s.status_message or "still processing")}</div>'
    return ""


_ROW_CLASS = {Mark.FAILED: "error", Mark.REFUSED: "refused", Mark.EXPECTED: "", None: ""}


def _span_row(row: WaterfallRow, total_ns: int, present: dict[str, SpanRow]) -> str:
    s = row.span
    left = 100 * row.offset_ns / total_ns
    width = max(0.15, 100 * s.duration_ns / total_ns)
    status = _status(row)
    return (
        f'<tr id="span-{escape(s.span_id)}" class="{_ROW_CLASS[row.mark]}">'
        f'<td class="svc"><i style="background:{service_colour(s.service)}"></i>'
        f"{escape(s.service)}</td>"
        f'<td class="name" style="padding-left:{8 + INDENT_PX * row.depth}px">{escape(s.name)}'
        f"{status}{_links(s, present)}{_attributes(s)}</td>"
        f'<td class="num">+{row.offset_ns / 1e6:.1f} ms</td>'
        f'<td class="num">{s.duration_ns / 1e6:.1f} ms</td>'
        f'<td><div class="track"><div class="bar" style="left:{left:.3f}%;width:{width:.3f}%;'
        f'background:{service_colour(s.service)}"></div></div></td></tr>'
    )


def log_fields(entry: LogRow) -> str:
    """The line's fields as ``key=value``, each value as JSON (strings quoted and escaped)."""
    pairs = (
        f"<code>{escape(key)}={escape(json.dumps(value, ensure_ascii=False, default=str))}</code>"
        for key, value in entry.attributes.items()
    )
    return f'<div class="fields">{" ".join(pairs)}</div>' if entry.attributes else ""


def _log_row(entry: LogRow, present: dict[str, SpanRow]) -> str:
    span = f'<a href="#span-{escape(entry.span_id)}">span</a>' if entry.span_id in present else ""
    return (
        f"<tr><td>{clock(entry.time_ns)}</td><td>{escape(entry.service)}</td>"
        f"<td>{escape(entry.severity)}</td><td>{escape(entry.body)}{log_fields(entry)}</td>"
        f"<td>{span}</td></tr>"
    )


# What the page shows besides the marks (terminal.LEGEND, the marks the rows use).
PAGE_LEGEND = (
    "bar: when the span ran on the trace's timeline, in its service's colour (red: failed)",
    "(root cause): the failing span to read first, named in the box above",
    "row in red: a failed span · in amber: a span that said no",
    "log fields: each line's fields as key=value, values in JSON (phone numbers masked)",
)


def trace_html(view: TraceView) -> str:
    rows = waterfall(view.spans)
    start = min((s.start_ns for s in view.spans), default=0)
    total = max([s.end_ns - start for s in view.spans] + [1])
    present = {s.span_id: s for s in view.spans}
    found = verdict(view.spans)
    if found.root_cause:
        cause = f'<p class="cause failing">root cause: {escape(found.root_cause.line())}</p>'
    elif found.refusal:
        line = escape(found.refusal.line())
        cause = f'<p class="cause refused">refused, not a failure: {line}</p>'
    else:
        cause = '<p class="cause none">root cause: no failing span</p>'
    marks = "".join(f"<li>{escape(text.strip())}</li>" for text in [*legend(rows), *PAGE_LEGEND])
    ids = ", ".join(f"<code>{escape(t)}</code>" for t in view.trace_ids)
    order = f" · order <code>{escape(view.order_id)}</code>" if view.order_id else ""
    services = sorted({s.service for s in view.spans})
    body = (
        f"<h1>Trace {ids}</h1><p>{len(view.spans)} spans in {total / 1e6:.1f} ms across "
        f'{escape(", ".join(services))}{order} · {found.outcome} · <a href="/">all traces</a></p>'
        + cause
        + f'<ul class="legend">{marks}</ul>'
        + "<table><thead><tr><th>service</th><th>span</th><th>start</th><th>duration</th>"
        "<th>timeline</th></tr></thead><tbody>"
        + "".join(_span_row(r, total, present) for r in rows)
        + f"</tbody></table><h2>Log lines ({len(view.logs)})</h2>"
        "<table><thead><tr><th>time (UTC)</th><th>service</th><th>level</th>"
        "<th>message and fields</th>"
        "<th></th></tr></thead><tbody>"
        + "".join(_log_row(entry, present) for entry in view.logs)
        + "</tbody></table>"
    )
    return page(f"Safiri trace {', '.join(view.trace_ids)}", body)

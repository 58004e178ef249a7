"""``safiri trace`` output: the waterfall as an indented tree, the root cause, the log lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .html_page import clock
from .model import RootCause, TraceSummary, TraceView
from .outcome import Verdict, refusal_reason
from .params import RecentQuery
from .waterfall import Mark, WaterfallRow, verdict, waterfall

__all__ = ["legend", "render_recent", "render_trace", "trace_document"]

RED, BOLD, RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"
MAX_LABEL = 72


MARKS = {Mark.FAILED: "✗", Mark.REFUSED: "⊘", Mark.EXPECTED: "~"}
LEGEND = {
    Mark.FAILED: "✗ failed: an error that is the trace's failure, or the expired hold",
    Mark.REFUSED: "⊘ said no: a refused step or a 4xx answer (the client's or the business's)",
    Mark.EXPECTED: '~ error status that is no failure: the provider\'s "still processing"',
}


def _paint(text: str, style: str, colour: bool) -> str:
    return f"{style}{text}{RESET}" if colour else text


def _status(row: WaterfallRow) -> str:
    span = row.span
    if row.mark is Mark.REFUSED:
        return f"  REFUSED {refusal_reason(span)}"
    if row.mark is Mark.EXPECTED:
        return f"  NOT YET {span.status_message or 'still processing'}"
    error = f"  ERROR {span.status_message}" if span.is_error else ""
    return error + ("  ◀ root cause" if row.is_root_cause else "")


def legend(rows: Sequence[WaterfallRow]) -> list[str]:
    """One line per mark the rows use."""
    used = {r.mark for r in rows}
    return [f"  {text}" for mark, text in LEGEND.items() if mark in used]


def verdict_line(found: Verdict) -> str:
    if found.root_cause is not None:
        return f"root cause: {found.root_cause.line()}"
    if found.refusal is not None:
        return f"refused, not a failure: {found.refusal.line()}"
    return "root cause: no failing span"


def render_trace(view: TraceView, *, colour: bool, holds_logs: bool = True) -> str:
    """The tree (each span marked by its own status, the marks explained under it), the
    trace's outcome and root cause, then its log lines."""
    rows = waterfall(view.spans)
    found = verdict(view.spans)
    order = f"order {view.order_id} · " if view.order_id else ""
    services = sorted({s.service for s in view.spans})
    lines = [
        f"{order}trace {', '.join(view.trace_ids)} · {len(view.spans)} spans"
        f" · {', '.join(services)} · {found.outcome}{' order' if found.purchase else ''}"
    ]
    labels = [f"{'  ' * r.depth}{r.span.service}: {r.span.name}" for r in rows]
    width = min(MAX_LABEL, max((len(label) for label in labels), default=0))
    for row, label in zip(rows, labels, strict=True):
        span = row.span
        mark = MARKS[row.mark] if row.mark else " "
        line = (
            f"{mark} {label:<{width}}  +{row.offset_ns / 1e6:8.1f} ms"
            f" {span.duration_ns / 1e6:8.1f} ms{_status(row)}"
        )
        lines.append(_paint(line, RED, colour) if row.mark is Mark.FAILED else line)
    if marks := legend(rows):
        lines += ["", "marks:", *marks]
    cause = verdict_line(found)
    lines += ["", _paint(cause, BOLD + RED, colour) if found.root_cause else cause, ""]
    if not holds_logs:
        ids = " or ".join(f"trace_id={t}" for t in view.trace_ids)
        lines.append(f"logs: this source keeps spans only; search your log store for {ids}")
        return "\n".join(lines)
    lines.append(f"logs ({len(view.logs)}):")
    for entry in view.logs:
        line = f"  {clock(entry.time_ns)}  {entry.service:<16} {entry.severity:<7} {entry.body}"
        failing = entry.severity.upper() in ("ERROR", "FATAL", "CRITICAL")
        lines.append(_paint(line, RED, colour) if failing else line)
    return "\n".join(lines)


def _cause(cause: RootCause | None) -> dict[str, Any] | None:
    return None if cause is None else {**asdict(cause), "line": cause.line()}


def trace_document(view: TraceView) -> dict[str, Any]:
    """What ``--json`` prints: the trace, its outcome, each span's place in the tree and
    mark, and the root cause (failed) or the refusal (refused)."""
    found = verdict(view.spans)
    document = view.to_dict()
    document["outcome"] = str(found.outcome)
    document["purchase"] = found.purchase
    document["root_cause"] = _cause(found.root_cause)
    document["refusal"] = _cause(found.refusal)
    document["spans"] = [
        {
            **row.span.to_dict(),
            "depth": row.depth,
            "offset_ms": row.offset_ns / 1e6,
            "duration_ms": row.span.duration_ns / 1e6,
            "mark": None if row.mark is None else str(row.mark),
        }
        for row in waterfall(view.spans)
    ]
    return document


def render_recent(
    summaries: Sequence[TraceSummary], query: RecentQuery, since: str, *, colour: bool
) -> str:
    """``--failed``, ``--refused``: one line per trace, with its root cause or refusal."""
    title = query.title
    note = (
        ["(traces without an order, such as /readyz probes at start-up, are not listed: --other)"]
        if query.purchases
        else []
    )
    if not summaries:
        return "\n".join([f"no {title} in the last {since}", *note])
    lines = [f"{title} in the last {since}: {len(summaries)}, newest first:"]
    for s in summaries:
        if s.root_cause:
            why = _paint(s.root_cause.line(), RED, colour)
        elif s.refusal:
            why = f"refused: {s.refusal.line()}"
        else:
            why = str(s.outcome)
        label = s.order_id or ("(no order)" if s.purchase else f"({s.root_service}: {s.root_name})")
        lines.append(f"  {clock(s.start_ns)}  order {label:<36}  trace {s.trace_id}  {why}")
    return "\n".join([*lines, *note])

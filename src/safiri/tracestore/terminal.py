"""``safiri trace`` output: the waterfall as an indented tree, the root cause, the log lines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .html_page import clock
from .model import TraceSummary, TraceView
from .waterfall import root_cause, waterfall

__all__ = ["render_failed", "render_trace", "trace_document"]

RED, BOLD, RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"
MAX_LABEL = 72


def _paint(text: str, style: str, colour: bool) -> str:
    return f"{style}{text}{RESET}" if colour else text


def render_trace(view: TraceView, *, colour: bool, holds_logs: bool = True) -> str:
    """The tree (✗ marks the path to the root cause), its root cause, then its log lines."""
    rows = waterfall(view.spans)
    order = f"order {view.order_id} · " if view.order_id else ""
    services = sorted({s.service for s in view.spans})
    lines = [
        f"{order}trace {', '.join(view.trace_ids)} · {len(view.spans)} spans"
        f" · {', '.join(services)}"
    ]
    labels = [f"{'  ' * r.depth}{r.span.service}: {r.span.name}" for r in rows]
    width = min(MAX_LABEL, max((len(label) for label in labels), default=0))
    for row, label in zip(rows, labels, strict=True):
        span = row.span
        status = f"  ERROR {span.status_message}" if span.is_error else ""
        mark = "✗" if row.on_error_path else " "
        line = (
            f"{mark} {label:<{width}}  +{row.offset_ns / 1e6:8.1f} ms"
            f" {span.duration_ns / 1e6:8.1f} ms{status}"
        )
        lines.append(_paint(line, RED, colour) if row.on_error_path else line)
    cause = root_cause(view.spans)
    verdict = f"root cause: {cause.line()}" if cause else "root cause: no failing span"
    lines += ["", _paint(verdict, BOLD + RED, colour) if cause else verdict, ""]
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


def trace_document(view: TraceView) -> dict[str, Any]:
    """What ``--json`` prints: the trace, each span's place in the tree, and the root cause."""
    cause = root_cause(view.spans)
    document = view.to_dict()
    document["root_cause"] = None if cause is None else {**asdict(cause), "line": cause.line()}
    document["spans"] = [
        {
            **row.span.to_dict(),
            "depth": row.depth,
            "offset_ms": row.offset_ns / 1e6,
            "duration_ms": row.span.duration_ns / 1e6,
            "on_error_path": row.on_error_path,
        }
        for row in waterfall(view.spans)
    ]
    return document


def render_failed(summaries: Sequence[TraceSummary], since: str, *, colour: bool) -> str:
    if not summaries:
        return f"no failed orders in the last {since}"
    lines = [f"{len(summaries)} failed traces in the last {since}, newest first:"]
    for s in summaries:
        cause = s.root_cause.line() if s.root_cause else "no failing span"
        lines.append(
            f"  {clock(s.start_ns)}  order {s.order_id or '(unknown)':<36}  trace {s.trace_id}"
            f"  {_paint(cause, RED, colour)}"
        )
    return "\n".join(lines)

"""A trace as rows in time order, each with the mark its own status earns, and its summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .model import RootCause, SpanRow, TraceSummary
from .outcome import EXPIRED_STEP, Mark, Verdict, classify
from .tree import tree

__all__ = ["EXPIRED_STEP", "Mark", "WaterfallRow", "root_cause", "summarise", "verdict"]
__all__ += ["waterfall"]


@dataclass(frozen=True)
class WaterfallRow:
    span: SpanRow
    depth: int
    offset_ns: int
    mark: Mark | None  # what this span's own status says; None: nothing to see
    is_root_cause: bool


def verdict(spans: Sequence[SpanRow]) -> Verdict:
    """The trace's outcome (failed, refused, succeeded), its root cause or refusal, its marks."""
    return classify(tree(spans))


def root_cause(spans: Sequence[SpanRow]) -> RootCause | None:
    """The deepest failing span (the earliest if several are as deep), else an expired hold;
    never a refusal, a 4xx answer or a client span of one."""
    return verdict(spans).root_cause


def waterfall(spans: Sequence[SpanRow]) -> list[WaterfallRow]:
    """Rows in display order, each with its mark."""
    ordered = tree(spans)
    if not ordered:
        return []
    t0 = min(s.start_ns for s, _ in ordered)
    found = classify(ordered)
    cause = found.root_cause.span_id if found.root_cause else None
    return [
        WaterfallRow(s, d, s.start_ns - t0, found.marks.get(s.span_id), s.span_id == cause)
        for s, d in ordered
    ]


def summarise(trace_id: str, spans: Sequence[SpanRow]) -> TraceSummary:
    ordered = tree(spans)
    root = ordered[0][0] if ordered else None
    start = min((s.start_ns for s in spans), default=0)
    end = max((s.end_ns for s in spans), default=0)
    found = classify(ordered)
    return TraceSummary(
        trace_id=trace_id,
        order_id=next((s.order_id for s in spans if s.order_id), None),
        root_service=root.service if root else "",
        root_name=root.name if root else "",
        start_ns=start,
        duration_ns=max(0, end - start),
        span_count=len(spans),
        # errors that count as failures: not 4xx answers, refusals or "still processing"
        error_count=sum(s.is_error and found.marks.get(s.span_id) is Mark.FAILED for s in spans),
        root_cause=found.root_cause,
        outcome=found.outcome,
        purchase=found.purchase,
        refusal=found.refusal,
    )

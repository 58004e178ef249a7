"""A trace as a tree in time order, and the span a person tracing a failure looks at first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .model import RootCause, SpanRow, TraceSummary

__all__ = ["WaterfallRow", "root_cause", "summarise", "waterfall"]

EXPIRED_STEP = "expire_hold"


@dataclass(frozen=True)
class WaterfallRow:
    span: SpanRow
    depth: int
    offset_ns: int
    on_error_path: bool


def _tree(spans: Sequence[SpanRow]) -> list[tuple[SpanRow, int]]:
    """Depth-first, children by start time; a span whose parent is absent is a root."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRow]] = {}
    for span in sorted(spans, key=lambda s: (s.start_ns, s.span_id)):
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    ordered: list[tuple[SpanRow, int]] = []
    seen: set[str] = set()
    # Roots first; spans caught in a parent cycle (bad input) are shown as roots after them.
    for start in [*children.get(None, []), *spans]:
        stack = [(start, 0)]
        while stack:
            span, depth = stack.pop()
            if span.span_id in seen:
                continue
            seen.add(span.span_id)
            ordered.append((span, depth))
            stack += [(c, depth + 1) for c in reversed(children.get(span.span_id, []))]
    return ordered


def _cause(span: SpanRow) -> str:
    if span.status_message:
        return span.status_message
    code = span.attributes.get("safiri.payment.result_code")
    if code not in (None, 0):
        return f"ResultCode {code}: {span.attributes.get('safiri.payment.result_desc', '')}"
    for event in span.events:
        if event.get("name") == "exception":
            attrs = event.get("attributes", {})
            return f"{attrs.get('exception.type', 'exception')}: {attrs.get('exception.message')}"
    return "error status, no message"


# Set on a reconciliation the provider answered "still processing": Daraja says so with an
# HTTP 500, which marks that call's spans as errors although nothing failed.
_PENDING = "safiri.payment.pending"
_RECONCILE = "reconcile_payment"


def _expected_errors(tree: list[tuple[SpanRow, int]]) -> set[str]:
    """Spans marked pending, the spans under them and the spans above them up to the
    reconciliation: their error status is the provider's way of saying "not yet", not the
    failure a person tracing the order is looking for.

    Each process exports its spans on its own schedule, so a trace read mid-reconciliation
    may hold the simulator's marked span before the payment service's, or the other way
    round: either end of the chain is enough to recognise it.
    """
    by_id = {s.span_id: s for s, _ in tree}
    children: dict[str, list[SpanRow]] = {}
    for span, _ in tree:
        children.setdefault(span.parent_span_id or "", []).append(span)
    marked = [s for s, _ in tree if s.attributes.get(_PENDING) is True]
    expected: set[str] = set()
    stack = list(marked)
    while stack:  # down from each marked span
        span = stack.pop()
        if span.span_id not in expected:
            expected.add(span.span_id)
            stack.extend(children.get(span.span_id, []))
    for span in marked:  # up to the reconciliation that asked
        parent = by_id.get(span.parent_span_id or "")
        while parent is not None and parent.name != _RECONCILE and parent.span_id not in expected:
            expected.add(parent.span_id)
            parent = by_id.get(parent.parent_span_id or "")
    return expected


def _root_cause(tree: list[tuple[SpanRow, int]]) -> RootCause | None:
    expected = _expected_errors(tree)
    failing = [(s, d) for s, d in tree if s.is_error and s.span_id not in expected]
    if failing:
        span, _ = min(failing, key=lambda sd: (-sd[1], sd[0].start_ns))
        return RootCause(span.service, span.name, _cause(span), span.span_id)
    for span, _ in tree:
        if span.name == EXPIRED_STEP:
            why = "the seat hold expired before a payment result arrived"
            return RootCause(span.service, span.name, why, span.span_id)
    return None


def root_cause(spans: Sequence[SpanRow]) -> RootCause | None:
    """The deepest failing span (the earliest if several are as deep), else an expired hold."""
    return _root_cause(_tree(spans))


def waterfall(spans: Sequence[SpanRow]) -> list[WaterfallRow]:
    """Rows in display order; ``on_error_path`` marks the root cause and its ancestors."""
    tree = _tree(spans)
    if not tree:
        return []
    t0 = min(s.start_ns for s, _ in tree)
    by_id = {s.span_id: s for s, _ in tree}
    path: set[str] = set()
    cause = _root_cause(tree)
    node = by_id.get(cause.span_id) if cause else None
    while node is not None and node.span_id not in path:
        path.add(node.span_id)
        node = by_id.get(node.parent_span_id or "")
    return [WaterfallRow(s, d, s.start_ns - t0, s.span_id in path) for s, d in tree]


def summarise(trace_id: str, spans: Sequence[SpanRow]) -> TraceSummary:
    tree = _tree(spans)
    root = tree[0][0] if tree else None
    start = min((s.start_ns for s in spans), default=0)
    end = max((s.end_ns for s in spans), default=0)
    return TraceSummary(
        trace_id=trace_id,
        order_id=next((s.order_id for s in spans if s.order_id), None),
        root_service=root.service if root else "",
        root_name=root.name if root else "",
        start_ns=start,
        duration_ns=max(0, end - start),
        span_count=len(spans),
        error_count=sum(s.is_error for s in spans),
        root_cause=_root_cause(tree),
    )

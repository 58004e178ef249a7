"""A trace's spans as a tree: depth-first, children in start order, parents looked up by id."""

from __future__ import annotations

from collections.abc import Sequence

from .model import SpanRow

__all__ = ["Tree", "tree"]

Tree = list[tuple[SpanRow, int]]  # (span, depth) in display order


def tree(spans: Sequence[SpanRow]) -> Tree:
    """Depth-first, children by start time; a span whose parent is absent is a root."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[SpanRow]] = {}
    for span in sorted(spans, key=lambda s: (s.start_ns, s.span_id)):
        parent = span.parent_span_id if span.parent_span_id in ids else None
        children.setdefault(parent, []).append(span)
    ordered: Tree = []
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

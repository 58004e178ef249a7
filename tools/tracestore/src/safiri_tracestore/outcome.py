"""What a trace says about its purchase: failed, refused or succeeded, and the span to read.

OpenTelemetry's HTTP conventions make the client span of a 4xx answer an error and the server
span of the same answer not one: a client's mistake or a business "no" is not a failure. So an
error span counts as a failure unless it is

- a client span of a 4xx answer (it only reflects the "no" of the service it called),
- inside a server span of its own service that answered 4xx (that service turned the error
  into a "no"), or marked ``safiri.outcome=refused``,
- a provider's "still processing" (``safiri.payment.pending``, see ``_expected_errors``);

and an ``expire_hold`` span is a failure although it is no error. A trace with a failure is
failed; else one with a refused span, or whose root answered 4xx, is refused; else succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from .model import KIND_CLIENT, KIND_CONSUMER, KIND_SERVER, Outcome, RootCause, SpanRow
from .tree import Tree

__all__ = ["EXPIRED_STEP", "Mark", "Verdict", "classify", "refusal_reason"]

EXPIRED_STEP = "expire_hold"
# Set on a reconciliation the provider answered "still processing": Daraja says so with an
# HTTP 500, which marks that call's spans as errors although nothing failed.
_PENDING = "safiri.payment.pending"
_RECONCILE = "reconcile_payment"


class Mark(StrEnum):
    """What a span's own status says (the waterfall's marks)."""

    FAILED = "failed"  # an error that is the trace's failure, or the expired hold
    REFUSED = "refused"  # said no: a refused step, a 4xx answer, or an error that became one
    EXPECTED = "expected"  # an error status that is no failure (the provider's "not yet")


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    purchase: bool
    root_cause: RootCause | None  # failed: the span to look at first
    refusal: RootCause | None  # refused: who said no, and why
    marks: dict[str, Mark] = field(default_factory=dict)  # by span id


def _expected_errors(tree: Tree) -> set[str]:
    """Spans marked pending, the spans under them and the spans above them up to the
    reconciliation: their error status is the provider's way of saying "not yet".

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


def _answered_as_refusal(span: SpanRow, by_id: dict[str, SpanRow]) -> bool:
    """Whether the nearest server span of ``span``'s own service (itself included) answered
    4xx; a message consumer or another service's span in between ends the search."""
    node: SpanRow | None = span
    while node is not None and node.service == span.service:
        if node.kind == KIND_SERVER:
            return node.answered_4xx
        if node.kind == KIND_CONSUMER:
            return False
        node = by_id.get(node.parent_span_id or "")
    return False


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
    if span.http_status is not None:
        return f"answered {span.http_status}"
    return "error status, no message"


def refusal_reason(span: SpanRow) -> str:
    """Why ``span`` said no: its ``refused`` event, else its error or its 4xx answer."""
    for event in span.events:
        if event.get("name") == "refused":
            attrs = event.get("attributes", {})
            reason = attrs.get("safiri.refusal.reason", "refused")
            message = attrs.get("safiri.refusal.message")
            return f"{reason}: {message}" if message else str(reason)
    return _cause(span)


def _deepest(spans: list[tuple[SpanRow, int]]) -> SpanRow | None:
    """The deepest (the earliest if several are as deep)."""
    return min(spans, key=lambda sd: (-sd[1], sd[0].start_ns))[0] if spans else None


def _root_cause(span: SpanRow | None, why: str | None = None) -> RootCause | None:
    if span is None:
        return None
    return RootCause(span.service, span.name, why or _cause(span), span.span_id)


def classify(tree: Tree) -> Verdict:
    by_id = {s.span_id: s for s, _ in tree}
    expected = _expected_errors(tree)
    marks: dict[str, Mark] = {}
    for span, _ in tree:
        if span.is_error and span.span_id in expected:
            marks[span.span_id] = Mark.EXPECTED
        elif span.refused or (span.answered_4xx and span.kind in (KIND_SERVER, KIND_CLIENT)):
            marks[span.span_id] = Mark.REFUSED
        elif span.is_error:
            refusal = _answered_as_refusal(span, by_id)
            marks[span.span_id] = Mark.REFUSED if refusal else Mark.FAILED
    purchase = any(s.marks_purchase for s, _ in tree)
    failing = [(s, d) for s, d in tree if marks.get(s.span_id) is Mark.FAILED]
    if failing:
        return Verdict(Outcome.FAILED, purchase, _root_cause(_deepest(failing)), None, marks)
    expired = next((s for s, _ in tree if s.name == EXPIRED_STEP), None)
    if expired is not None:
        marks[expired.span_id] = Mark.FAILED
        why = "the seat hold expired before a payment result arrived"
        return Verdict(Outcome.FAILED, purchase, _root_cause(expired, why), None, marks)
    said_no = [(s, d) for s, d in tree if s.refused]
    if said_no or any(s.answered_4xx for s, d in tree if d == 0):
        return Verdict(Outcome.REFUSED, purchase, None, _said_no(tree, marks), marks)
    return Verdict(Outcome.SUCCEEDED, purchase, None, None, marks)


def _said_no(tree: Tree, marks: dict[str, Mark]) -> RootCause | None:
    """The deepest refused step, else the deepest error that became a "no", else the deepest
    4xx answer; a client span (which only reflects the answer it got) comes last."""
    answered = [(s, d) for s, d in tree if marks.get(s.span_id) is Mark.REFUSED]
    own = [(s, d) for s, d in answered if s.kind != KIND_CLIENT]
    for group in (
        [(s, d) for s, d in tree if s.refused],
        [(s, d) for s, d in own if s.is_error],
        own,
        answered,
    ):
        span = _deepest(group)
        if span is not None:
            return _root_cause(span, refusal_reason(span))
    return None

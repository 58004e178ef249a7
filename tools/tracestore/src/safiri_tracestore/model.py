"""What the store holds: spans and log lines as plain rows, a trace as the two together."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

__all__ = ["ORDER_ATTRIBUTE", "PURCHASE_ENTRY", "STATUS_ERROR", "TRIP_ATTRIBUTE", "LogRow"]
__all__ += ["Outcome", "RootCause", "SpanRow", "TraceSummary", "TraceView"]

JsonDict = dict[str, Any]
ORDER_ATTRIBUTE = "safiri.order.id"
TRIP_ATTRIBUTE = "safiri.trip.id"  # only purchase steps carry it (a refused one has no order)
OUTCOME_ATTRIBUTE = "safiri.outcome"  # "refused" on a business step that said no
PURCHASE_ENTRY = "POST /api/v1/orders"  # the gateway's server span of a purchase
STATUS_ERROR = 2  # OTLP Status.code: 0 unset, 1 ok, 2 error
KIND_SERVER, KIND_CLIENT, KIND_CONSUMER = 2, 3, 5  # OTLP Span.SpanKind
_HTTP_STATUS = ("http.response.status_code", "http.status_code")  # stable, then old names


class Outcome(StrEnum):
    """What a trace says about its purchase (see ``outcome.classify``)."""

    FAILED = "failed"  # a server-side error, a failed payment, an expired hold
    REFUSED = "refused"  # the business or the client said no (sold out, unknown trip, 4xx)
    SUCCEEDED = "succeeded"  # neither


def _order_id(attributes: JsonDict, *keys: str) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


@dataclass(frozen=True)
class SpanRow:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    service: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: JsonDict = field(default_factory=dict)
    events: list[JsonDict] = field(default_factory=list)
    links: list[JsonDict] = field(default_factory=list)
    resource: JsonDict = field(default_factory=dict)

    @property
    def is_error(self) -> bool:
        return self.status_code == STATUS_ERROR

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def order_id(self) -> str | None:
        return _order_id(self.attributes, ORDER_ATTRIBUTE)

    @property
    def http_status(self) -> int | None:
        for key in _HTTP_STATUS:
            value = self.attributes.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    @property
    def answered_4xx(self) -> bool:
        """An HTTP span whose answer was a client error: the client's mistake or a "no"."""
        status = self.http_status
        return status is not None and 400 <= status < 500

    @property
    def refused(self) -> bool:
        return self.attributes.get(OUTCOME_ATTRIBUTE) == "refused"

    @property
    def marks_purchase(self) -> bool:
        """A span only a purchase has: an order or trip id, or the gateway's order request."""
        return (
            self.order_id is not None
            or _order_id(self.attributes, TRIP_ATTRIBUTE) is not None
            or self.name == PURCHASE_ENTRY
        )

    def to_dict(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: JsonDict) -> SpanRow:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class LogRow:
    time_ns: int
    trace_id: str | None
    span_id: str | None
    service: str
    severity: str
    body: str
    attributes: JsonDict = field(default_factory=dict)

    @property
    def order_id(self) -> str | None:
        return _order_id(self.attributes, ORDER_ATTRIBUTE, "order_id")

    def to_dict(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: JsonDict) -> LogRow:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class RootCause:
    """The span a person tracing a failure should look at first, and why it failed."""

    service: str
    name: str
    cause: str
    span_id: str

    def line(self) -> str:
        return f"{self.service} → {self.name}: {self.cause}"


@dataclass(frozen=True)
class TraceView:
    """One trace (or the traces of one order): its spans in start order and its log lines."""

    trace_ids: list[str]
    spans: list[SpanRow]
    logs: list[LogRow]
    order_id: str | None = None

    def to_dict(self) -> JsonDict:
        return {
            "trace_id": self.trace_ids[0] if self.trace_ids else None,
            "trace_ids": self.trace_ids,
            "order_id": self.order_id,
            "spans": [s.to_dict() for s in self.spans],
            "logs": [entry.to_dict() for entry in self.logs],
        }

    @classmethod
    def from_dict(cls, data: JsonDict) -> TraceView:
        return cls(
            trace_ids=list(data["trace_ids"]),
            spans=[SpanRow.from_dict(s) for s in data["spans"]],
            logs=[LogRow.from_dict(entry) for entry in data["logs"]],
            order_id=data.get("order_id"),
        )


@dataclass(frozen=True)
class TraceSummary:
    """A line of the recent-traces list: where the trace started, what it says about its
    purchase (``purchase`` is false for probes, start-up noise and searches) and why."""

    trace_id: str
    order_id: str | None
    root_service: str
    root_name: str
    start_ns: int
    duration_ns: int
    span_count: int
    error_count: int
    root_cause: RootCause | None
    outcome: Outcome = Outcome.SUCCEEDED
    purchase: bool = False
    refusal: RootCause | None = None  # who said no, and why, when the outcome is refused

    def to_dict(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: JsonDict) -> TraceSummary:
        """From ``to_dict``; a store from before outcomes were kept reads as it listed."""
        cause, refusal = data["root_cause"], data.get("refusal")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data} | {
            "root_cause": RootCause(**cause) if cause else None,
            "refusal": RootCause(**refusal) if refusal else None,
            "outcome": Outcome(data.get("outcome") or ("failed" if cause else "succeeded")),
        }
        return cls(**values)

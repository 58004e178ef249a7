"""What the store holds: spans and log lines as plain rows, a trace as the two together."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["ORDER_ATTRIBUTE", "STATUS_ERROR", "LogRow", "RootCause", "SpanRow", "TraceSummary"]
__all__ += ["TraceView"]

JsonDict = dict[str, Any]
ORDER_ATTRIBUTE = "safiri.order.id"
STATUS_ERROR = 2  # OTLP Status.code: 0 unset, 1 ok, 2 error


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
    """A line of the recent-traces list: where the trace started and what failed in it."""

    trace_id: str
    order_id: str | None
    root_service: str
    root_name: str
    start_ns: int
    duration_ns: int
    span_count: int
    error_count: int
    root_cause: RootCause | None

    def to_dict(self) -> JsonDict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: JsonDict) -> TraceSummary:
        cause = data["root_cause"]
        values = {f.name: data[f.name] for f in fields(cls)} | {
            "root_cause": RootCause(**cause) if cause else None
        }
        return cls(**values)

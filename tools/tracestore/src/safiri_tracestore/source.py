"""Where ``safiri trace`` reads from: the embedded store or Tempo, behind one interface."""

from __future__ import annotations

from typing import Protocol

from .model import TraceSummary, TraceView
from .params import RecentQuery

__all__ = ["SourceUnavailable", "TraceNotFound", "TraceSource"]


class TraceNotFound(LookupError):
    """The source answered, and holds nothing for that trace or order."""


class SourceUnavailable(RuntimeError):
    """The source could not be reached or answered with something unreadable."""


class TraceSource(Protocol):
    @property
    def holds_logs(self) -> bool:
        """Whether ``TraceView.logs`` can be non-empty (Tempo keeps spans only)."""
        ...

    async def trace(self, trace_id: str) -> TraceView: ...

    async def order(self, order_id: str) -> TraceView: ...

    async def recent(self, query: RecentQuery) -> list[TraceSummary]: ...

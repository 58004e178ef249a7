"""Grafana Tempo's HTTP API as a ``TraceSource``: the same ``safiri trace`` on the full stack.

``GET /api/traces/<id>`` answers ``{"batches": [...]}`` (``resourceSpans`` in newer
versions, ``{"trace": {...}}`` from ``/api/v2``) with base64 ids and enum names;
``GET /api/search?q=<TraceQL>`` answers ``{"traces": [{"traceID": ...}]}`` with hex ids
whose leading zeros may be dropped. Tempo keeps spans only: log lines live in Loki.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import aiohttp
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .model import (
    ORDER_ATTRIBUTE,
    PURCHASE_ENTRY,
    TRIP_ATTRIBUTE,
    Outcome,
    SpanRow,
    TraceSummary,
    TraceView,
)
from .otlp_json import parse_otlp_json
from .params import RecentQuery
from .payload import PayloadError
from .rows import span_rows
from .source import SourceUnavailable, TraceNotFound
from .waterfall import summarise

__all__ = ["SEARCHES", "TempoClient", "tempo_spans", "traceql"]

# TraceQL that Tempo 2.0 already understands (no ``!= nil``): each finds a superset, and
# ``outcome.classify`` decides on the whole trace, as with the embedded store.
_PURCHASE = (
    f'{{ span.{ORDER_ATTRIBUTE} =~ ".+" || span.{TRIP_ATTRIBUTE} =~ ".+"'
    f' || name = "{PURCHASE_ENTRY}" }}'
)
_4XX = "span.http.response.status_code >= 400 && span.http.response.status_code < 500"
SEARCHES = {
    Outcome.FAILED: '{ status = error || name = "expire_hold" }',
    Outcome.REFUSED: f'{{ span.safiri.outcome = "refused" || ({_4XX}) }}',
    Outcome.SUCCEEDED: "{ }",
    None: "{ }",
}


def traceql(query: RecentQuery) -> str:
    """The search for ``query``: its outcome's, restricted to purchases when it asks for them."""
    search = SEARCHES[query.outcome]
    if query.purchases:
        return _PURCHASE if search == "{ }" else f"{search} && {_PURCHASE}"
    return search


def _scope_spans(batch: dict[str, Any]) -> dict[str, Any]:
    """Tempo before 2.0 still said ``instrumentationLibrarySpans``."""
    if "scopeSpans" in batch or "instrumentationLibrarySpans" not in batch:
        return batch
    scoped = [
        {**ils, "scope": ils.get("instrumentationLibrary", {})}
        for ils in batch["instrumentationLibrarySpans"]
    ]
    return {**batch, "scopeSpans": scoped}


def tempo_spans(document: Any) -> list[SpanRow]:
    """The spans of a Tempo trace-by-id answer; ``ValueError`` if it is not one."""
    if isinstance(document, dict) and isinstance(document.get("trace"), dict):
        document = document["trace"]
    if not isinstance(document, dict):
        raise ValueError("a Tempo trace is a JSON object")
    batches = document.get("batches", document.get("resourceSpans", []))
    if not isinstance(batches, list):
        raise ValueError("batches is not a list")
    request = {"resourceSpans": [_scope_spans(b) for b in batches if isinstance(b, dict)]}
    try:
        return span_rows(parse_otlp_json(request, ExportTraceServiceRequest()))
    except PayloadError as exc:
        raise ValueError(str(exc)) from None


def _traceql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TempoClient:
    holds_logs = False

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, *, lookback_s: float = 86400.0
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._lookback_s = lookback_s

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self._base}{path}"
        try:
            async with self._session.get(url, params=params) as response:
                if response.status == 404:
                    raise TraceNotFound(f"Tempo has no trace at {path}")
                if response.status != 200:
                    text = (await response.text())[:200]
                    raise SourceUnavailable(f"Tempo answered {response.status}: {text}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SourceUnavailable(f"cannot read Tempo at {self._base}: {exc}") from exc

    async def _spans(self, trace_id: str) -> list[SpanRow]:
        try:
            spans = tempo_spans(await self._get(f"/api/traces/{quote(trace_id, safe='')}"))
        except ValueError as exc:
            raise SourceUnavailable(f"Tempo's trace {trace_id} is unreadable: {exc}") from exc
        if not spans:
            raise TraceNotFound(f"Tempo has no spans for trace {trace_id}")
        return spans

    async def _search(self, traceql: str, since_s: float, limit: int) -> list[str]:
        now = int(time.time())
        params = {"q": traceql, "start": str(now - int(since_s)), "end": str(now + 1)}
        document = await self._get("/api/search", {**params, "limit": str(limit)})
        try:
            return [str(t["traceID"]).rjust(32, "0") for t in document.get("traces") or []]
        except (AttributeError, KeyError, TypeError) as exc:
            raise SourceUnavailable(f"Tempo's search answer is unreadable: {exc}") from exc

    async def _fetch_all(self, trace_ids: list[str]) -> dict[str, list[SpanRow]]:
        """The traces a search named; one not readable by id yet (still in flight) is skipped."""
        found = await asyncio.gather(*(self._spans(t) for t in trace_ids), return_exceptions=True)
        traces = {}
        for trace_id, result in zip(trace_ids, found, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, TraceNotFound):
                    raise result
            else:
                traces[trace_id] = result
        return traces

    async def trace(self, trace_id: str) -> TraceView:
        spans = await self._spans(trace_id)
        return TraceView(
            [trace_id], spans, [], next((s.order_id for s in spans if s.order_id), None)
        )

    async def order(self, order_id: str) -> TraceView:
        traceql = f"{{ span.{ORDER_ATTRIBUTE} = {_traceql_string(order_id)} }}"
        trace_ids = await self._search(traceql, self._lookback_s, 20)
        if not trace_ids:
            raise TraceNotFound(f"Tempo found no trace with {ORDER_ATTRIBUTE}={order_id}")
        found = await self._fetch_all(trace_ids)
        if not found:
            raise TraceNotFound(f"Tempo cannot yet return the traces of order {order_id}")
        spans = sorted((s for batch in found.values() for s in batch), key=lambda s: s.start_ns)
        return TraceView(list(found), spans, [], order_id)

    async def recent(self, query: RecentQuery) -> list[TraceSummary]:
        trace_ids = await self._search(traceql(query), query.since_s, query.limit)
        found = await self._fetch_all(trace_ids)
        summaries = [summarise(t, spans) for t, spans in found.items()]
        summaries = [s for s in summaries if query.admits(s)]
        return sorted(summaries, key=lambda s: (s.outcome is not Outcome.FAILED, -s.start_ns))

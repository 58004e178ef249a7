"""The query API: a trace, an order's trace, and recent traces by outcome and purchase, as JSON."""

from __future__ import annotations

from aiohttp import web

from .model import TraceView
from .params import RecentQuery, is_trace_id
from .repository import TraceRepository

__all__ = ["MAX_ORDER_ID", "QueryError", "api_routes", "find_order", "find_trace"]

MAX_ORDER_ID = 200


class QueryError(Exception):
    """A query that cannot be answered: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def find_trace(repository: TraceRepository, request: web.Request) -> TraceView:
    """The trace named in the path; 400 for a malformed id, 404 when nothing is stored."""
    trace_id = request.match_info["trace_id"].lower()
    if not is_trace_id(trace_id):
        raise QueryError(400, "a trace id is 32 hex digits")
    view = await repository.trace([trace_id])
    if not view.spans and not view.logs:
        raise QueryError(404, "no spans or logs stored for this trace")
    return view


async def find_order(repository: TraceRepository, request: web.Request) -> TraceView:
    order_id = request.match_info["order_id"]
    if not order_id or len(order_id) > MAX_ORDER_ID:
        raise QueryError(400, "order id is empty or too long")
    view = await repository.order(order_id)
    if not view.trace_ids:
        raise QueryError(404, "no trace stored for this order")
    return view


def api_routes(repository: TraceRepository) -> list[web.RouteDef]:
    async def trace(request: web.Request) -> web.Response:
        try:
            return web.json_response((await find_trace(repository, request)).to_dict())
        except QueryError as exc:
            return _error(exc.status, exc.message)

    async def order(request: web.Request) -> web.Response:
        try:
            return web.json_response((await find_order(repository, request)).to_dict())
        except QueryError as exc:
            return _error(exc.status, exc.message)

    async def recent(request: web.Request) -> web.Response:
        try:
            query = RecentQuery.from_params(request.query)
        except ValueError as exc:
            return _error(400, str(exc))
        summaries = await repository.recent(query)
        return web.json_response({"traces": [s.to_dict() for s in summaries]})

    return [
        web.get("/api/traces", recent),
        web.get("/api/traces/{trace_id}", trace),
        web.get("/api/orders/{order_id}/trace", order),
    ]

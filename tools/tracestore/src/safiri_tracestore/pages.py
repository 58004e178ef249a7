"""The pictures: ``GET /`` lists recent traces, ``GET /traces/{id}`` draws one as a waterfall."""

from __future__ import annotations

from aiohttp import web

from .api import QueryError, find_order, find_trace
from .html_page import escape, index_html, page
from .html_waterfall import trace_html
from .params import RecentQuery
from .repository import TraceRepository

__all__ = ["page_routes"]


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _error_page(exc: QueryError) -> web.Response:
    body = f'<h1>{exc.status}</h1><p>{escape(exc.message)}</p><p><a href="/">all traces</a></p>'
    return _html(page(f"{exc.status} {exc.message}", body), exc.status)


def page_routes(repository: TraceRepository) -> list[web.RouteDef]:
    async def index(request: web.Request) -> web.Response:
        try:
            query = RecentQuery.from_params(request.query)
        except ValueError as exc:
            return _error_page(QueryError(400, str(exc)))
        summaries = await repository.recent(query)
        return _html(index_html(summaries, query))

    async def trace(request: web.Request) -> web.Response:
        try:
            return _html(trace_html(await find_trace(repository, request)))
        except QueryError as exc:
            return _error_page(exc)

    async def order(request: web.Request) -> web.Response:
        try:
            return _html(trace_html(await find_order(repository, request)))
        except QueryError as exc:
            return _error_page(exc)

    return [
        web.get("/", index),
        web.get("/traces/{trace_id}", trace),
        web.get("/orders/{order_id}", order),
    ]

"""The pictures: ``GET /`` lists and searches recent traces, ``GET /traces/{id}`` and
``GET /orders/{id}`` draw one as a waterfall.

``/?q=ID``, ``/?order=ID``, ``/?trace=ID`` and ``/traces/ORDER_ID`` go straight to the trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from aiohttp import web

from .api import QueryError, find_order, find_trace
from .html_page import escape, index_html, page
from .html_waterfall import trace_html
from .ids import is_order_id
from .params import RecentQuery
from .repository import TraceRepository
from .search import parse_search

__all__ = ["page_routes"]


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _error_page(exc: QueryError) -> web.Response:
    body = f'<h1>{exc.status}</h1><p>{escape(exc.message)}</p><p><a href="/">all traces</a></p>'
    return _html(page(f"{exc.status} {exc.message}", body), exc.status)


def _target(params: Mapping[str, str]) -> str | None:
    """Where an id in the query goes: ``order=`` and ``trace=`` as they are, ``q=`` when it
    holds only an id."""
    for name, path in (("order", "/orders/"), ("trace", "/traces/")):
        if text := params.get(name, "").strip():
            return path + quote(text, safe="")
    try:
        return parse_search(params.get("q", "")).target
    except ValueError:
        return None  # the list reports it


def page_routes(repository: TraceRepository) -> list[web.RouteDef]:
    async def index(request: web.Request) -> web.Response:
        if target := _target(request.query):
            raise web.HTTPFound(target)
        services = await repository.services()
        try:
            query = RecentQuery.from_params(request.query)
        except ValueError as exc:
            html = index_html([], RecentQuery(), services, request.query, str(exc))
            return _html(html, 400)
        summaries = await repository.recent(query)
        return _html(index_html(summaries, query, services, request.query))

    async def trace(request: web.Request) -> web.Response:
        order_id = request.match_info["trace_id"]
        if is_order_id(order_id):  # an order id pasted where a trace id goes
            raise web.HTTPFound(f"/orders/{order_id.lower()}")
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

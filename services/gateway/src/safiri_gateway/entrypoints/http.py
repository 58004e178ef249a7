"""The public HTTP API: translate requests into queries and commands, answers into JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable
from typing import Any, NoReturn

from aiohttp import web

from safiri_telemetry import current_trace_id
from safiri_web import PROBLEM_CONTENT_TYPE, Problem, problem_response

from ..adapters.active_users import ACTIVE_USERS
from ..domain.idempotency import IdempotencyKeyInFlight, IdempotencyKeyReused, is_valid_key
from ..domain.orders import InvalidOrder, parse_order
from ..domain.trips import InvalidQuery, parse_trip_query
from ..public.models import MAINTENANCE_PROBLEM_KIND
from ..service_layer.place_order import OrdersPaused
from ..service_layer.ports import UpstreamReply, UpstreamTimeout, UpstreamUnavailable
from .keys import CLIENT, PLACE_ORDER, TICKETING
from .openapi import OPENAPI

__all__ = ["MAX_BODY_BYTES", "routes"]

MAX_BODY_BYTES = 16 * 1024

routes = web.RouteTableDef()


def _upstream_problem(exc: UpstreamUnavailable | UpstreamTimeout) -> Problem:
    if isinstance(exc, UpstreamTimeout):
        return Problem(
            504,
            "upstream-timeout",
            "Upstream timeout",
            "Ticketing did not answer in time; retry with the same Idempotency-Key.",
        )
    return Problem(
        503,
        "upstream-unavailable",
        "Upstream unavailable",
        "Ticketing is unavailable; retry shortly.",
    )


def _maintenance_answer(request: web.Request, paused: OrdersPaused) -> web.Response:
    """503 with its own problem type and Retry-After: the maintenance-mode flag is on."""
    seconds = paused.retry_after_seconds
    response = problem_response(
        Problem(
            503,
            MAINTENANCE_PROBLEM_KIND,
            "Down for maintenance",
            "New orders are paused for maintenance; searches and existing orders still work."
            f" Retry in {seconds} seconds with the same Idempotency-Key.",
        ),
        request.path,
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def _answer(request: web.Request, status: int, body: dict[str, Any]) -> web.Response:
    """A relayed or replayed answer: JSON when it succeeded, problem+json when it did not."""
    if status < 400:
        return web.json_response(body, status=status)
    # The problem is reported under this request's trace, the one in X-Trace-Id.
    problem = {**body, "status": status, "instance": request.path, "trace_id": current_trace_id()}
    return web.Response(status=status, text=json.dumps(problem), content_type=PROBLEM_CONTENT_TYPE)


async def _relay(request: web.Request, call: Awaitable[UpstreamReply]) -> web.Response:
    try:
        reply = await call
    except (UpstreamUnavailable, UpstreamTimeout) as exc:
        raise _upstream_problem(exc) from None
    return _answer(request, reply.status, reply.body)


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


@routes.get("/api/v1/trips")
async def search_trips(request: web.Request) -> web.Response:
    try:
        query = parse_trip_query(request.query)
    except InvalidQuery as exc:
        raise Problem(
            400,
            "invalid-query",
            "Invalid query",
            f"{exc.field} {exc.message}",
            errors=[{"field": exc.field, "message": exc.message}],
        ) from None
    return await _relay(request, request.app[TICKETING].search_trips(query.as_params()))


@routes.get("/api/v1/orders/{order_id}")
async def get_order(request: web.Request) -> web.Response:
    try:
        order_id = str(uuid.UUID(request.match_info["order_id"]))
    except ValueError:
        raise Problem(404, "order-not-found", "Order not found") from None
    return await _relay(request, request.app[TICKETING].get_order(order_id))


def _idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if not key:
        raise Problem(
            400,
            "idempotency-key-missing",
            "Idempotency-Key missing",
            "POST /orders needs an Idempotency-Key header, unique per order attempt.",
        )
    if not is_valid_key(key):
        raise Problem(
            400,
            "idempotency-key-invalid",
            "Idempotency-Key invalid",
            "The Idempotency-Key must be 1 to 255 printable ASCII characters.",
        )
    return key


async def _json_body(request: web.Request) -> object:
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as application/json.",
        )
    raw = await request.read()  # 413 past client_max_size, turned into problem+json

    def no_constants(name: str) -> NoReturn:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw, parse_constant=no_constants)
    # RecursionError: 16 KiB of '[' nests deeper than the parser's stack.
    except (ValueError, RecursionError):
        raise Problem(
            400, "malformed-json", "Malformed JSON", "The body is not a valid JSON document."
        ) from None


@routes.post("/api/v1/orders")
async def place_order(request: web.Request) -> web.Response:
    key = _idempotency_key(request)
    body = await _json_body(request)
    try:
        order = parse_order(body)
    except InvalidOrder as exc:
        raise Problem(
            422,
            "validation-error",
            "Invalid request",
            str(exc),
            errors=[{"field": e.field, "message": e.message} for e in exc.errors],
        ) from None
    request.app[ACTIVE_USERS].seen(order.phone)  # noted for the next flush (never raises)
    try:
        outcome = await request.app[PLACE_ORDER](order, request[CLIENT], key)
    except IdempotencyKeyReused:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was first used with a different body.",
        ) from None
    except IdempotencyKeyInFlight:
        raise Problem(
            409,
            "idempotency-key-in-flight",
            "Request in progress",
            "The first request with this Idempotency-Key is still being processed; retry shortly.",
        ) from None
    except (UpstreamUnavailable, UpstreamTimeout) as exc:
        raise _upstream_problem(exc) from None
    except OrdersPaused as paused:
        return _maintenance_answer(request, paused)
    stored = outcome.response
    response = _answer(request, stored.status, stored.body)
    if stored.status < 400:
        response.headers["Location"] = f"/api/v1/orders/{stored.body['order_id']}"
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response

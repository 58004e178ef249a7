"""One HTTP error shape for every service: RFC 9457 problem details with the trace id."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from loguru import logger

from safiri_telemetry import current_trace_id

if TYPE_CHECKING:  # only its .errors() is read: no pydantic import at run time
    from pydantic import ValidationError

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "invalid_request",
    "problem_middleware",
    "problem_response",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "https://safiri.dev/problems/"


class Problem(Exception):
    """Raise anywhere in a handler to answer with a problem+json document."""

    def __init__(
        self, status: int, kind: str, title: str, detail: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.extra = extra


def problem_response(problem: Problem, instance: str | None = None) -> web.Response:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + problem.kind,
        "title": problem.title,
        "status": problem.status,
    }
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    body.update(problem.extra)
    body["trace_id"] = current_trace_id()
    return web.Response(
        status=problem.status, text=json.dumps(body), content_type=PROBLEM_CONTENT_TYPE
    )


_HTTP_KINDS = {
    404: ("not-found", "Not Found"),
    405: ("method-not-allowed", "Method Not Allowed"),
    413: ("payload-too-large", "Request body too large"),
}


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turns every error into problem+json; a stack trace never reaches the client."""
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem, request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind, title = _HTTP_KINDS.get(exc.status, ("http-error", exc.reason))
        response = problem_response(
            Problem(exc.status, kind, title, exc.text or None), request.path
        )
        if isinstance(exc, web.HTTPMethodNotAllowed):  # which methods it takes (RFC 9110)
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except Exception:
        logger.exception("unhandled error")
        return problem_response(
            Problem(
                500,
                "internal-error",
                "Internal Server Error",
                "The error was logged with this trace id.",
            ),
            request.path,
        )


def invalid_request(
    error: ValidationError,
    status: int = 422,
    kind: str = "validation-error",
    title: str = "Invalid request",
) -> Problem:
    """The problem a request that fails its pydantic model is answered with: a client's
    mistake, each field named in ``errors`` and ``detail``; malformed JSON is 400."""
    errors = error.errors(include_url=False, include_input=False, include_context=False)
    if errors[0]["type"] == "json_invalid":
        return Problem(400, "malformed-json", "Malformed JSON")
    found = [
        {"field": ".".join(str(part) for part in e["loc"]) or "body", "message": e["msg"]}
        for e in errors
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in found)
    return Problem(status, kind, title, detail, errors=found)

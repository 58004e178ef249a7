"""A method a route does not take is refused with 405 and the ``Allow`` header RFC 9110 asks
for, as problem+json like every other error."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from safiri_web import Problem, problem_response

__all__ = ["allow_header"]


@web.middleware
async def allow_header(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        response = problem_response(
            Problem(
                405,
                "method-not-allowed",
                "Method Not Allowed",
                f"{request.method} is not allowed here; use {allowed}.",
            ),
            request.path,
        )
        response.headers["Allow"] = allowed
        return response

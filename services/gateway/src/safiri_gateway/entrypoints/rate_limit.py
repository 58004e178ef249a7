"""Per-client rate limits on the public API: a leaky bucket per API key (aiolimiter).

Each client may burst up to ``burst`` requests, refilled at ``per_second``. Past it the answer
is ``429`` problem+json with ``Retry-After``, counted in ``gateway_rate_limited_total``, and
nothing reaches ticketing. Buckets live in the process: with several gateway replicas each
allows its own share.
"""

from __future__ import annotations

import math

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiolimiter import AsyncLimiter
from prometheus_client import CollectorRegistry, Counter

from safiri_web import Problem, problem_response

from .keys import CLIENT

__all__ = ["rate_limit"]


def rate_limit(per_second: float, burst: int, registry: CollectorRegistry) -> Middleware:
    """Runs after the API-key check (it limits each client); ``per_second`` 0 turns it off."""
    limited = Counter(
        "gateway_rate_limited",
        "Requests refused with 429 because their client was over its rate limit.",
        registry=registry,
    )
    buckets: dict[str, AsyncLimiter] = {}
    retry_after = str(max(1, math.ceil(1 / per_second))) if per_second > 0 else "1"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = request.get(CLIENT)
        if per_second <= 0 or client is None:
            return await handler(request)
        bucket = buckets.get(client)
        if bucket is None:
            bucket = buckets[client] = AsyncLimiter(burst, burst / per_second)
        if not bucket.has_capacity():
            limited.inc()
            response = problem_response(
                Problem(
                    429,
                    "rate-limited",
                    "Too many requests",
                    f"This API key may send {per_second:g} requests per second"
                    f" (bursts of {burst}); retry after {retry_after} s.",
                ),
                request.path,
            )
            response.headers["Retry-After"] = retry_after
            return response
        await bucket.acquire()  # has capacity: does not wait
        return await handler(request)

    return middleware

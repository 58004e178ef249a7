"""Per-client rate limits on the public API, shared by every gateway replica (``limits``).

Each client may send ``burst`` requests in any window of ``burst / per_second`` seconds (a
moving window: the bucket of ``burst`` refilled at ``per_second``, counted exactly). Past it
the answer is ``429`` problem+json with ``Retry-After``, counted in
``gateway_rate_limited_total``, and nothing reaches ticketing.

The counts live in ``SAFIRI_RATE_LIMIT_STORAGE``: ``async+memory://`` (the default) keeps them
in the process, right for one replica; with several replicas (cluster mode, Kubernetes with
an autoscaler) they live in Redis (``async+redis://host:6379``), so a client's limit is the
same whether one replica or ten serve it. Dividing the limit by the replica count was the
alternative: it needs no Redis, but is wrong whenever the count changes (an autoscaler) or
the balancer does not spread a client evenly. If Redis cannot be reached the request is let
through (a limiter must not take the API down) and counted in
``gateway_rate_limit_errors_total``.
"""

from __future__ import annotations

import math

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from limits import RateLimitItemPerSecond
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from loguru import logger
from prometheus_client import CollectorRegistry, Counter

from safiri_web import Problem, problem_response

from .keys import CLIENT

__all__ = ["rate_limit", "rate_limit_window"]

NAMESPACE = "safiri-gateway"


def rate_limit_window(per_second: float, burst: int) -> RateLimitItemPerSecond:
    """``burst`` requests per window of ``burst / per_second`` seconds (whole seconds, at
    least 1: the amount is scaled to keep the rate)."""
    seconds = max(1, round(burst / per_second))
    return RateLimitItemPerSecond(max(1, round(per_second * seconds)), seconds, NAMESPACE)


def rate_limit(
    per_second: float,
    burst: int,
    registry: CollectorRegistry,
    storage_uri: str = "async+memory://",
) -> Middleware:
    """Runs after the API-key check (it limits each client); ``per_second`` 0 turns it off."""
    limited = Counter(
        "gateway_rate_limited",
        "Requests refused with 429 because their client was over its rate limit.",
        registry=registry,
    )
    errors = Counter(
        "gateway_rate_limit_errors",
        "Requests let through unchecked because the rate limit's store could not be reached.",
        registry=registry,
    )
    item = rate_limit_window(per_second, burst) if per_second > 0 else None
    storage = storage_from_string(storage_uri)
    if not isinstance(storage, Storage):  # a synchronous store would block the event loop
        raise ValueError(f"{storage_uri!r} is not an async storage (async+memory://, async+redis)")
    limiter = MovingWindowRateLimiter(storage)
    retry_after = str(max(1, math.ceil(1 / per_second))) if per_second > 0 else "1"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        client = request.get(CLIENT)
        if item is None or client is None:
            return await handler(request)
        try:
            allowed = await limiter.hit(item, client)
        except Exception as exc:  # the store is down: serve, and say so
            errors.inc()
            logger.bind(error=repr(exc)).warning("rate limit store unreachable; request allowed")
            allowed = True
        if not allowed:
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
        return await handler(request)

    return middleware

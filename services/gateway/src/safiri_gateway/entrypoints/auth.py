"""Bearer API keys: every /api/v1 route but the OpenAPI document needs one."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from opentelemetry import baggage
from opentelemetry import context as otel_context

from safiri_web import Problem, Secret, problem_response

from .keys import CLIENT

__all__ = ["API_PREFIX", "CLIENT_BAGGAGE", "OPENAPI_PATH", "client_id", "require_api_key"]

API_PREFIX = "/api/v1/"
# The W3C baggage entry naming the client to the services behind the gateway.
CLIENT_BAGGAGE = "safiri.client"
OPENAPI_PATH = "/api/v1/openapi.json"


def _digest(value: str) -> bytes:
    # surrogatepass: a header with undecodable bytes must fail to match, not raise.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def client_id(api_key: str) -> str:
    """A stable, non-reversible name for the holder of ``api_key``."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def _presented_key(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _unauthorized(request: web.Request) -> web.Response:
    response = problem_response(
        Problem(
            401,
            "unauthorized",
            "Unauthorized",
            "Send a valid API key as 'Authorization: Bearer <key>'.",
        ),
        request.path,
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def require_api_key(keys: Iterable[Secret]) -> Middleware:
    # Digests of equal length make compare_digest's time independent of the key's length too.
    known = [(_digest(key.value), client_id(key.value)) for key in keys]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # The gateway is where callers' baggage ends: none is passed on to the services.
        token = otel_context.attach(baggage.clear())
        try:
            return await _authenticated(request, handler)
        finally:
            otel_context.detach(token)

    async def _authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX) or request.path == OPENAPI_PATH:
            return await handler(request)
        presented = _presented_key(request.headers.get("Authorization"))
        if presented is None:
            return _unauthorized(request)
        digest = _digest(presented)
        client = None
        # Every key is compared, so timing does not tell which one (or whether any) matched.
        for known_digest, known_client in known:
            if hmac.compare_digest(digest, known_digest):
                client = known_client
        if client is None:
            return _unauthorized(request)
        request[CLIENT] = client
        # The client travels with the trace as W3C baggage (payment chooses a payment's canary
        # arm by it); a hash of the key, never the key.
        token = otel_context.attach(baggage.set_baggage(CLIENT_BAGGAGE, client))
        try:
            return await handler(request)
        finally:
            otel_context.detach(token)

    return middleware

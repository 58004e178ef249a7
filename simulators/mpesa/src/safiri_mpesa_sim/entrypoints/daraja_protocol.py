"""Daraja's wire conventions: its error shape, bearer tokens and JSON bodies.

Errors here are not problem+json: clients of the real API parse exactly this shape.
"""

from __future__ import annotations

import secrets

from aiohttp import web

from ..appkeys import TOKENS

__all__ = [
    "BAD_REQUEST",
    "INVALID_TOKEN",
    "SERVICE_UNAVAILABLE",
    "bad_request",
    "bearer_token",
    "daraja_error",
    "invalid_token",
    "json_object",
    "service_unavailable",
]

BAD_REQUEST = "400.002.02"
INVALID_TOKEN = "404.001.03"
SERVICE_UNAVAILABLE = "503.001.01"


def daraja_error(status: int, code: str, message: str) -> web.Response:
    request_id = f"{secrets.randbelow(10**5):05d}-{secrets.randbelow(10**8):08d}-1"
    body = {"requestId": request_id, "errorCode": code, "errorMessage": message}
    return web.json_response(body, status=status)


def bad_request(field: str) -> web.Response:
    return daraja_error(400, BAD_REQUEST, f"Bad Request - Invalid {field}")


def invalid_token() -> web.Response:
    return daraja_error(401, INVALID_TOKEN, "Invalid Access Token")


def service_unavailable() -> web.Response:
    return daraja_error(503, SERVICE_UNAVAILABLE, "Service Unavailable")


def bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def json_object(request: web.Request) -> dict[str, object] | None:
    """The request's JSON object, or ``None`` when the body is not one."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


async def authorized_body(request: web.Request) -> dict[str, object] | web.Response:
    """The request's JSON object, or the Daraja error to answer (bad token, no object)."""
    if not request.app[TOKENS].is_valid(bearer_token(request)):
        return invalid_token()
    body = await json_object(request)
    return bad_request("Body") if body is None else body

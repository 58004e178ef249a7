"""Daraja's wire conventions: its error shape, bearer tokens and JSON bodies.

Errors here are not problem+json: clients of the real API parse exactly this shape.
"""

from __future__ import annotations

import secrets
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..appkeys import TOKENS

__all__ = [
    "BAD_REQUEST",
    "INVALID_TOKEN",
    "SERVICE_UNAVAILABLE",
    "authorized_body",
    "bad_request",
    "bearer_token",
    "daraja_body",
    "daraja_error",
    "invalid_token",
    "service_unavailable",
]

BAD_REQUEST = "400.002.02"
INVALID_TOKEN = "404.001.03"
SERVICE_UNAVAILABLE = "503.001.01"

_M = TypeVar("_M", bound=BaseModel)


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


def _daraja_field(error: ValidationError) -> str:
    """The Daraja name of the first field ``error`` refuses; ``Body`` for the body itself."""
    first = error.errors(include_url=False, include_input=False, include_context=False)[0]
    if first["type"] in {"json_invalid", "model_type"} or not first["loc"]:
        return "Body"
    return str(first["loc"][0])


async def daraja_body(request: web.Request, model: type[_M]) -> _M | web.Response:
    """The request's body as ``model``, or Daraja's 400 naming the first field that is wrong.

    Parsed by pydantic, not ``json.loads``: nesting too deep, NaN or text no one can store is
    the client's mistake, not a recursion error or a crash further in.
    """
    try:
        return model.model_validate_json(await request.read())
    except ValidationError as error:
        return bad_request(_daraja_field(error))


async def authorized_body(request: web.Request, model: type[_M]) -> _M | web.Response:
    """The request's body as ``model``, or the Daraja error to answer (bad token, bad body)."""
    if not request.app[TOKENS].is_valid(bearer_token(request)):
        return invalid_token()
    return await daraja_body(request, model)

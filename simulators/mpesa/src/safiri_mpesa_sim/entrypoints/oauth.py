"""``GET /oauth/v1/generate``: consumer key and secret in, a bearer token out."""

from __future__ import annotations

import base64
import hmac

from aiohttp import web
from pydantic import ValidationError

from ..appkeys import SETTINGS, TOKENS
from ..tokens import TOKEN_LIFETIME_SECONDS
from .daraja_protocol import daraja_error
from .requests import TokenQuery

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/oauth/v1/generate")
async def generate_token(request: web.Request) -> web.Response:
    try:
        TokenQuery.model_validate(dict(request.query))
    except ValidationError:
        return daraja_error(400, "400.008.02", "Invalid grant type passed")
    if not _credentials_match(request):
        return daraja_error(400, "400.008.01", "Invalid Authentication passed")
    token = request.app[TOKENS].issue()
    return web.json_response({"access_token": token, "expires_in": str(TOKEN_LIFETIME_SECONDS)})


def _credentials_match(request: web.Request) -> bool:
    settings = request.app[SETTINGS]
    key, secret = _basic_credentials(request.headers.get("Authorization", ""))
    # Both comparisons always run so the response time does not reveal which part was wrong.
    key_ok = hmac.compare_digest(key, settings.consumer_key.encode())
    secret_ok = hmac.compare_digest(secret, settings.consumer_secret.value.encode())
    return key_ok and secret_ok


def _basic_credentials(header: str) -> tuple[bytes, bytes]:
    """``(key, secret)`` from an HTTP Basic header; empty values when it is not one."""
    # aiohttp's BasicAuth is deprecated (removed in 4.0), so the header is read here.
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return b"", b""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:  # binascii.Error, or a header that is not ASCII
        return b"", b""
    key, _, secret = decoded.partition(b":")
    return key, secret

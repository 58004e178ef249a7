"""The provider's callback endpoint: Daraja's JSON → ``apply_callback``."""

from __future__ import annotations

import uuid

from aiohttp import web
from loguru import logger
from pydantic import ValidationError

from safiri_web import Problem, invalid_request

from ..domain.payments import CallbackRejected
from .keys import PAYMENTS
from .requests import CallbackQuery, StkCallbackBody

__all__ = ["CALLBACK_PATH", "routes"]

routes = web.RouteTableDef()
CALLBACK_PATH = "/callbacks/mpesa/{payment_id}"


@routes.post(CALLBACK_PATH)
async def mpesa_callback(request: web.Request) -> web.Response:
    payment_id = request.match_info["payment_id"]
    try:
        token = CallbackQuery.model_validate(dict(request.query)).token
        body = StkCallbackBody.model_validate_json(await request.read())
    except ValidationError as error:
        raise invalid_request(error, 400, "invalid-callback", "Not an STK callback") from None
    checkout_id, outcome = body.checkout_request_id, body.outcome()
    try:
        if not _is_uuid(payment_id):
            raise CallbackRejected(f"{payment_id!r} is not a payment id")
        await request.app[PAYMENTS].apply_callback(payment_id, token, checkout_id, outcome)
    except CallbackRejected as exc:
        logger.bind(payment_id=payment_id, reason=str(exc)).warning("callback rejected")
        raise Problem(403, "callback-rejected", "Callback rejected") from None
    return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True

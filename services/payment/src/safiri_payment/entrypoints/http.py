"""The provider's callback endpoint: Daraja's JSON → ``apply_callback``."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from loguru import logger

from safiri_web import Problem

from ..domain.payments import CallbackRejected, ProviderOutcome
from .keys import PAYMENTS

__all__ = ["CALLBACK_PATH", "routes"]

routes = web.RouteTableDef()
CALLBACK_PATH = "/callbacks/mpesa/{payment_id}"


def _parse(body: Any) -> tuple[str, ProviderOutcome]:
    try:
        callback = body["Body"]["stkCallback"]
        checkout_id = str(callback["CheckoutRequestID"])
        code = int(callback["ResultCode"])
        desc = str(callback["ResultDesc"])
    except (KeyError, TypeError, ValueError):
        raise Problem(400, "invalid-callback", "Not an STK callback") from None
    receipt = None
    items = callback.get("CallbackMetadata", {}).get("Item", [])
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("Name") == "MpesaReceiptNumber":
            receipt = str(item.get("Value"))
    return checkout_id, ProviderOutcome(code, desc, receipt)


@routes.post(CALLBACK_PATH)
async def mpesa_callback(request: web.Request) -> web.Response:
    payment_id = request.match_info["payment_id"]
    token = request.query.get("token", "")
    try:
        body = await request.json()
    except ValueError:
        raise Problem(400, "malformed-json", "Malformed JSON") from None
    checkout_id, outcome = _parse(body)
    try:
        uuid.UUID(payment_id)
        await request.app[PAYMENTS].apply_callback(payment_id, token, checkout_id, outcome)
    except (CallbackRejected, ValueError) as exc:
        logger.bind(payment_id=payment_id, reason=str(exc)).warning("callback rejected")
        raise Problem(403, "callback-rejected", "Callback rejected") from None
    return web.json_response({"ResultCode": 0, "ResultDesc": "Accepted"})

"""``/simulator/*``: the simulator's own API (problem+json errors, admin key required)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from safiri_telemetry import mask_phone
from safiri_web import Problem

from ..appkeys import LEDGER, SETTINGS
from ..ledger import Transaction

__all__ = ["ADMIN_KEY_HEADER", "routes"]

ADMIN_KEY_HEADER = "X-Simulator-Admin-Key"

routes = web.RouteTableDef()


@routes.get("/simulator/ledger")
async def ledger(request: web.Request) -> web.Response:
    _require_admin(request)
    transactions = [_row(t) for t in request.app[LEDGER].transactions()]
    return web.json_response({"transactions": transactions})


def _require_admin(request: web.Request) -> None:
    expected = request.app[SETTINGS].admin_key.value.encode()
    given = request.headers.get(ADMIN_KEY_HEADER, "").encode()
    if not hmac.compare_digest(given, expected):
        raise Problem(
            401, "unauthorized", "Unauthorized", f"Send the admin key in {ADMIN_KEY_HEADER}."
        )


def _row(transaction: Transaction) -> dict[str, Any]:
    result = transaction.result
    completed_at = transaction.completed_at
    return {
        "checkout_request_id": transaction.checkout_request_id,
        "merchant_request_id": transaction.merchant_request_id,
        "phone": mask_phone(transaction.push.phone),
        "amount": transaction.push.amount,
        "account_reference": transaction.push.account_reference,
        "result_code": result.result_code if result else None,
        "result_desc": result.result_desc if result else None,
        "receipt": transaction.receipt,
        "state": transaction.state.value,
        "callback": transaction.callback.value,
        "created_at": transaction.created_at.isoformat(),
        "completed_at": completed_at.isoformat() if completed_at else None,
    }

"""Daraja's Pull Transactions API: the shortcode's completed payments in a time window.

It is how a merchant finds money it was never told about: a push whose CheckoutRequestID it
never recorded (it crashed between the provider's answer and its own commit) cannot be asked
about by STK query, but its payment is in this list under the push's AccountReference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from ..appkeys import LEDGER, SETTINGS
from .daraja_protocol import authorized_body, bad_request
from .requests import PullTransactionsRequest

__all__ = ["PULL_TRANSACTIONS_PATH", "routes"]

PULL_TRANSACTIONS_PATH = "/pulltransactions/v1/query"
_FORMAT = "%Y-%m-%d %H:%M:%S"
_EAT = timedelta(hours=3)  # Daraja's times are Nairobi's

routes = web.RouteTableDef()


def _when(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, _FORMAT).replace(tzinfo=UTC) - _EAT
    except (ValueError, OverflowError):  # OverflowError: the first hours of year 1, EAT
        return None


@routes.post(PULL_TRANSACTIONS_PATH)
async def pull_transactions(request: web.Request) -> web.Response:
    app = request.app
    body = await authorized_body(request, PullTransactionsRequest)
    if isinstance(body, web.Response):
        return body
    if str(body.ShortCode) != app[SETTINGS].shortcode:
        return bad_request("ShortCode")
    start, end = _when(body.StartDate), _when(body.EndDate)
    if start is None:
        return bad_request("StartDate")
    if end is None:
        return bad_request("EndDate")
    found = [
        {
            "transactionId": t.receipt,
            "trxDate": (t.completed_at + _EAT).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "msisdn": int(t.push.phone),
            "sender": "UNKNOWN",
            "transactiontype": "c2b-pay-bill-debit",
            "billreference": t.push.account_reference,
            "amount": f"{t.push.amount:.1f}",
            "organizationname": "Safiri simulator",
        }
        for t in app[LEDGER].transactions()
        if t.charged and t.completed_at is not None and start <= t.completed_at <= end
    ]
    return web.json_response(
        {
            "ResponseRefID": request.headers.get("X-Request-Id", "sim"),
            "ResponseCode": "1000",
            "ResponseMessage": "Success",
            "Response": [found],
        }
    )

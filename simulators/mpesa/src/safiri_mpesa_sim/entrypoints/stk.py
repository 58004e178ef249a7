"""STK push and STK push query: translate Daraja JSON to ledger operations and back."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web
from loguru import logger
from opentelemetry import context as otel_context
from opentelemetry import trace

from safiri_telemetry import business_span

from ..appkeys import FAULTS, LEDGER, METRICS, NOTIFIER, SETTINGS, TOKENS
from ..faults import CallbackFault, StkQueryFault
from ..ledger import UnknownCheckout
from ..metrics import NO_RESULT
from ..outcomes import outcome_for
from ..stk_push import InvalidField, check_credentials, parse_stk_push
from .daraja_protocol import (
    BAD_REQUEST,
    INVALID_TOKEN,
    authorized_body,
    bad_request,
    bearer_token,
    daraja_body,
    daraja_error,
    invalid_token,
)
from .requests import StkPushRequest, StkQueryRequest

__all__ = ["STK_PUSH_PATH", "STK_QUERY_PATH", "routes"]

STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"

routes = web.RouteTableDef()

_ACCEPTED = "Success. Request accepted for processing"


@routes.post(STK_PUSH_PATH)
async def stk_push(request: web.Request) -> web.Response:
    app = request.app
    requests_total = app[METRICS].stk_requests
    if not app[TOKENS].is_valid(bearer_token(request)):
        requests_total.labels(INVALID_TOKEN).inc()
        return invalid_token()
    body = await daraja_body(request, StkPushRequest)
    if isinstance(body, web.Response):
        requests_total.labels(BAD_REQUEST).inc()
        return body
    settings = app[SETTINGS]
    try:
        push = parse_stk_push(body.model_dump(), settings.shortcode, settings.passkey.value)
    except InvalidField as invalid:
        requests_total.labels(BAD_REQUEST).inc()
        return bad_request(invalid.field)
    callbacks = app[FAULTS].current.callbacks
    # With callbacks switched off every phone behaves like the no-callback test number.
    planned = None if callbacks is CallbackFault.NEVER else outcome_for(push.phone)
    transaction = app[LEDGER].open(push, planned, datetime.now(UTC))
    result_code = str(planned.result_code) if planned else NO_RESULT
    attributes = {
        "safiri.mpesa.checkout_request_id": transaction.checkout_request_id,
        "safiri.mpesa.account_reference": push.account_reference,
        "safiri.mpesa.amount": push.amount,
        "safiri.mpesa.phone": push.phone,
        "safiri.mpesa.planned_result_code": result_code,
        "safiri.mpesa_sim.callbacks": callbacks.value,
    }
    with business_span("mpesa.accept_stk_push", attributes):
        app[NOTIFIER].schedule(transaction, otel_context.get_current(), callbacks)
        logger.bind(
            checkout_request_id=transaction.checkout_request_id,
            account_reference=push.account_reference,
            planned_result_code=result_code,
        ).info("STK push accepted")
    requests_total.labels(result_code).inc()
    return web.json_response(
        {
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResponseCode": "0",
            "ResponseDescription": _ACCEPTED,
            "CustomerMessage": _ACCEPTED,
        }
    )


@routes.post(STK_QUERY_PATH)
async def stk_query(request: web.Request) -> web.Response:
    app = request.app
    body = await authorized_body(request, StkQueryRequest)
    if isinstance(body, web.Response):
        return body
    settings = app[SETTINGS]
    try:
        check_credentials(body.model_dump(), settings.shortcode, settings.passkey.value)
        transaction = app[LEDGER].get(body.CheckoutRequestID)
    except InvalidField as invalid:
        return bad_request(invalid.field)
    except UnknownCheckout:
        return bad_request("CheckoutRequestID")
    if transaction.result is None or app[FAULTS].current.stk_query is StkQueryFault.PENDING:
        # Daraja's "not yet" is an HTTP 500; the attribute tells a trace reader it is no failure.
        trace.get_current_span().set_attribute("safiri.payment.pending", True)
        return daraja_error(500, "500.001.1001", "The transaction is being processed")
    return web.json_response(
        {
            "ResponseCode": "0",
            # Daraja's own spelling, kept so clients matching on it are not surprised.
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": transaction.merchant_request_id,
            "CheckoutRequestID": transaction.checkout_request_id,
            "ResultCode": str(transaction.result.result_code),
            "ResultDesc": transaction.result.result_desc,
        }
    )

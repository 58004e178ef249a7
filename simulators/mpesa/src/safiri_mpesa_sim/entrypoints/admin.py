"""``/simulator/*``: the simulator's own API (problem+json errors, admin key required)."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web
from loguru import logger
from opentelemetry import trace
from pydantic import ValidationError

from safiri_telemetry import mask_phone
from safiri_web import Problem

from ..appkeys import FAULTS, LEDGER, METRICS, NOTIFIER, SETTINGS
from ..faults import CallbackFault, Faults, InvalidFaults
from ..ledger import Transaction
from .requests import FaultSettings

__all__ = ["ADMIN_KEY_HEADER", "routes"]

ADMIN_KEY_HEADER = "X-Simulator-Admin-Key"

routes = web.RouteTableDef()


@routes.get("/simulator/ledger")
async def ledger(request: web.Request) -> web.Response:
    _require_admin(request)
    ledger = request.app[LEDGER]
    transactions = [_row(t) for t in ledger.transactions()]
    return web.json_response(
        {"since": ledger.since.isoformat(), "durable": ledger.durable, "transactions": transactions}
    )


@routes.get("/simulator/faults")
async def current_faults(request: web.Request) -> web.Response:
    _require_admin(request)
    return web.json_response(request.app[FAULTS].current.to_dict())


@routes.put("/simulator/faults")
async def replace_faults(request: web.Request) -> web.Response:
    """Replace every fault at once: a key left out is healthy again."""
    _require_admin(request)
    try:
        body = FaultSettings.model_validate_json(await request.read())
        wanted = Faults.from_mapping(body.model_dump(exclude_unset=True))
    except ValidationError as error:
        raise _invalid(_fields_in_error(error)) from None
    except InvalidFaults as invalid:
        raise _invalid([(e.field, e.message) for e in invalid.errors]) from None
    return _put_in_force(request, wanted)


@routes.delete("/simulator/faults")
async def heal(request: web.Request) -> web.Response:
    _require_admin(request)
    return _put_in_force(request, Faults())


def _put_in_force(request: web.Request, wanted: Faults) -> web.Response:
    app = request.app
    previous = app[FAULTS].set(wanted)
    app[METRICS].show_faults(wanted)
    if wanted.callbacks is not CallbackFault.OUT_OF_ORDER:
        app[NOTIFIER].release_held()
    settings = wanted.to_dict()
    changed = wanted.changed_since(previous)
    active = [name for name, on in wanted.active().items() if on]
    span = trace.get_current_span()
    for name, value in settings.items():
        if value is not None:  # a span attribute cannot be null; a missing one reads as unset
            span.set_attribute(f"safiri.mpesa_sim.faults.{name}", value)
    span.set_attribute("safiri.mpesa_sim.faults.changed", changed)
    logger.bind(
        **{f"fault_{name}": value for name, value in settings.items()},
        faults_changed=changed,
        faults_active=active,
    ).info("mpesa simulator faults changed")
    return web.json_response(settings)


def _invalid(errors: list[tuple[str, str]]) -> Problem:
    return Problem(
        422,
        "validation-error",
        "Invalid fault settings",
        "; ".join(f"{field}: {message}" for field, message in errors),
        errors=[{"field": field, "message": message} for field, message in errors],
    )


def _fields_in_error(error: ValidationError) -> list[tuple[str, str]]:
    """Each field the model refused, once (a union's every member reports the same field)."""
    found: dict[str, str] = {}
    for e in error.errors(include_url=False, include_input=False, include_context=False):
        if e["type"] == "json_invalid":
            return [("body", "is not JSON")]
        if e["type"] == "model_type":
            return [("body", "must be a JSON object")]
        field = str(e["loc"][0]) if e["loc"] else "body"
        found.setdefault(field, "is not a fault" if e["type"] == "extra_forbidden" else e["msg"])
    return list(found.items())


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

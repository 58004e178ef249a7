"""The public API as an OpenAPI 3.1 document, served at ``/api/v1/openapi.json``.

Bodies and parameters are the JSON Schema of the models in ``public/models.py`` (pydantic), the
ones the gateway answers through; this module adds the operations, every status each can
really give, and the links a client (or a stateful test) follows from a trip to its order.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ..public.models import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    IDEMPOTENCY_KEY_PATTERN,
    MAINTENANCE_PROBLEM_TYPE,
    Order,
    OrderAccepted,
    OrderRequest,
    Problem,
    TripList,
    TripSearch,
    ValidationProblem,
)

__all__ = ["OPENAPI"]

_PROBLEM = "application/problem+json"
_TRACE_HEADERS = {
    "X-Trace-Id": {"$ref": "#/components/headers/X-Trace-Id"},
    "traceparent": {"$ref": "#/components/headers/traceparent"},
}
_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (TripList, "serialization"),
    (OrderRequest, "validation"),
    (OrderAccepted, "serialization"),
    (Order, "serialization"),
    (Problem, "serialization"),
    (ValidationProblem, "serialization"),
]
_, _DEFINITIONS = models_json_schema(_MODELS, ref_template="#/components/schemas/{model}")
_SCHEMAS: dict[str, Any] = _DEFINITIONS["$defs"]


def _problem(
    description: str, schema: str = "Problem", headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_TRACE_HEADERS, **(headers or {})},
        "content": {_PROBLEM: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _json(
    description: str, schema: str, links: dict[str, Any] | None = None, **headers: Any
) -> dict[str, Any]:
    response = {
        "description": description,
        "headers": {**_TRACE_HEADERS, **headers},
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
    if links:
        response["links"] = links
    return response


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": name in schema.get("required", []),
            "schema": {k: v for k, v in prop.items() if k not in ("title", "default")},
        }
        for name, prop in schema["properties"].items()
    ]


_RESPONSES: dict[str, Any] = {
    "BadRequest": _problem(
        "Malformed JSON, a bad query, or a missing/invalid Idempotency-Key.", "ValidationProblem"
    ),
    "Unauthorized": _problem(
        "Missing or unknown API key.",
        headers={"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
    ),
    "NotFound": _problem("No such order."),
    "TooManyRequests": _problem(
        "This API key is over its rate limit (SAFIRI_RATE_LIMIT_PER_SECOND, bursts of"
        " SAFIRI_RATE_LIMIT_BURST); retry after the Retry-After seconds.",
        headers={"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    ),
    "Conflict": _problem(
        "Seats are no longer available, or the first request with this Idempotency-Key is "
        "still being processed (retry later)."
    ),
    "PayloadTooLarge": _problem("The body exceeds 16 KiB."),
    "UnsupportedMediaType": _problem("The body is not application/json."),
    "UnprocessableContent": _problem(
        "Invalid fields, an unknown trip, or an Idempotency-Key reused with another body.",
        "ValidationProblem",
    ),
    "InternalError": _problem("Unexpected error; logged under the trace id."),
    "ServiceUnavailable": _problem("Ticketing failed or could not be reached; retry."),
    "OrdersUnavailable": _problem(
        "Ticketing failed or could not be reached (retry with the same Idempotency-Key), or"
        f" maintenance mode is on ({MAINTENANCE_PROBLEM_TYPE}, the maintenance-mode flag): new"
        " orders are paused while searches and order reads go on; retry after the Retry-After"
        " seconds. A retry of an order already accepted gets its 202 even then.",
        headers={
            "Retry-After": {
                "description": "Seconds to wait; sent with the maintenance answer.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
    "GatewayTimeout": _problem("Ticketing did not answer in time; retry with the same key."),
}

_UPSTREAM_ERRORS = {
    "401": _ref("Unauthorized"),
    "429": _ref("TooManyRequests"),
    "500": _ref("InternalError"),
    "503": _ref("ServiceUnavailable"),
    "504": _ref("GatewayTimeout"),
}

_PATHS: dict[str, Any] = {
    "/trips": {
        "get": {
            "operationId": "searchTrips",
            "summary": "Trips departing on a day, optionally between two places.",
            "parameters": _query_parameters(TripSearch),
            "responses": {
                "200": _json(
                    "Matching trips.",
                    "TripList",
                    links={
                        "PlaceOrderOnTrip": {
                            "operationId": "placeOrder",
                            "description": "Hold seats on the first trip found.",
                            "requestBody": {"trip_id": "$response.body#/trips/0/trip_id"},
                        }
                    },
                ),
                "400": _ref("BadRequest"),
                **_UPSTREAM_ERRORS,
            },
        }
    },
    "/orders": {
        "post": {
            "operationId": "placeOrder",
            "summary": "Hold seats on a trip; payment is requested by STK push to the phone.",
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/OrderRequest"}}
                },
            },
            "responses": {
                "202": _json(
                    "Seats held; the order awaits payment. A replay carries "
                    "Idempotent-Replayed: true.",
                    "OrderAccepted",
                    links={
                        "GetOrder": {
                            "operationId": "getOrder",
                            "description": "Follow the order to payment.",
                            "parameters": {"path.order_id": "$response.body#/order_id"},
                        }
                    },
                    Location={
                        "schema": {"type": "string"},
                        "description": "/api/v1/orders/{order_id}",
                    },
                    **{"Idempotent-Replayed": {"schema": {"type": "string", "const": "true"}}},
                ),
                "400": _ref("BadRequest"),
                "409": _ref("Conflict"),
                "413": _ref("PayloadTooLarge"),
                "415": _ref("UnsupportedMediaType"),
                "422": _ref("UnprocessableContent"),
                **_UPSTREAM_ERRORS,
                "503": _ref("OrdersUnavailable"),
            },
        }
    },
    "/orders/{order_id}": {
        "get": {
            "operationId": "getOrder",
            "summary": "An order's current state.",
            "parameters": [
                {
                    "name": "order_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "format": "uuid"},
                }
            ],
            "responses": {
                "200": _json("The order.", "Order"),
                "404": _ref("NotFound"),
                **_UPSTREAM_ERRORS,
            },
        }
    },
    "/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document.",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1 document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Safiri public API",
        "version": "1.0.0",
        "description": "Search bus trips, hold seats and follow an order to payment. Every "
        "response carries traceparent and X-Trace-Id; every error is application/problem+json "
        "with a trace_id member.",
    },
    "servers": [{"url": "/api/v1"}],
    "security": [{"bearerAuth": []}],
    "paths": _PATHS,
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An API key."}
        },
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": True,
                "description": "Unique per order attempt. A retry with the same key and body "
                "returns the first answer; with another body it is refused (422); while the "
                "first is still running it is refused (409).",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": IDEMPOTENCY_KEY_MAX_LENGTH,
                    "pattern": IDEMPOTENCY_KEY_PATTERN,
                },
            }
        },
        "headers": {
            "X-Trace-Id": {"description": "The trace id (32 hex).", "schema": {"type": "string"}},
            "traceparent": {"description": "W3C Trace Context.", "schema": {"type": "string"}},
        },
        "schemas": _SCHEMAS,
        "responses": _RESPONSES,
    },
}

"""The public API as an OpenAPI 3.1 document, served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from ..domain.idempotency import MAX_KEY_LENGTH
from ..domain.orders import MAX_SEATS_PER_ORDER
from ..domain.trips import MAX_PLACE_LENGTH

__all__ = ["OPENAPI"]

_PROBLEM = "application/problem+json"
_UUID = {"type": "string", "format": "uuid"}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_TRACE_HEADERS = {
    "X-Trace-Id": {"$ref": "#/components/headers/X-Trace-Id"},
    "traceparent": {"$ref": "#/components/headers/traceparent"},
}


def _problem(
    description: str, schema: str = "Problem", headers: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_TRACE_HEADERS, **(headers or {})},
        "content": {_PROBLEM: {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _json(description: str, schema: str, **headers: Any) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**_TRACE_HEADERS, **headers},
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


_SCHEMAS: dict[str, Any] = {
    "Money": {
        "type": "object",
        "required": ["amount", "currency"],
        "properties": {
            "amount": {"type": "integer", "description": "Whole Kenyan shillings."},
            "currency": {"type": "string", "const": "KES"},
        },
    },
    "Trip": {
        "type": "object",
        "required": [
            "trip_id",
            "origin",
            "destination",
            "departs_at",
            "fare",
            "seats_total",
            "seats_available",
        ],
        "properties": {
            "trip_id": _UUID,
            "origin": {"type": "string"},
            "destination": {"type": "string"},
            "departs_at": _TIMESTAMP,
            "fare": {"$ref": "#/components/schemas/Money"},
            "seats_total": {"type": "integer", "minimum": 1},
            "seats_available": {"type": "integer", "minimum": 0},
        },
    },
    "TripList": {
        "type": "object",
        "required": ["trips"],
        "properties": {"trips": {"type": "array", "items": {"$ref": "#/components/schemas/Trip"}}},
    },
    "OrderRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["trip_id", "seat_count", "phone"],
        "properties": {
            "trip_id": _UUID,
            "seat_count": {"type": "integer", "minimum": 1, "maximum": MAX_SEATS_PER_ORDER},
            "phone": {
                "type": "string",
                "description": "Kenyan mobile number; +2547…, 07… and 01… are normalised to 254….",
                "pattern": "^(\\+?254|0)[17][0-9]{8}$",
                "examples": ["254712345678"],
            },
        },
    },
    "OrderAccepted": {
        "type": "object",
        "required": ["order_id", "status", "seats", "amount", "expires_at"],
        "properties": {
            "order_id": _UUID,
            "status": {"type": "string", "const": "PENDING_PAYMENT"},
            "seats": {"type": "array", "items": {"type": "integer"}},
            "amount": {"$ref": "#/components/schemas/Money"},
            "expires_at": _TIMESTAMP,
        },
    },
    "Ticket": {
        "type": "object",
        "required": ["ticket_id", "seat_no"],
        "properties": {"ticket_id": _UUID, "seat_no": {"type": "integer"}},
    },
    "Order": {
        "type": "object",
        "required": ["order_id", "status"],
        "properties": {
            "order_id": _UUID,
            "status": {
                "type": "string",
                "enum": ["PENDING_PAYMENT", "CONFIRMED", "PAYMENT_FAILED", "EXPIRED"],
            },
            "seats": {"type": "array", "items": {"type": "integer"}},
            "amount": {"$ref": "#/components/schemas/Money"},
            "expires_at": _TIMESTAMP,
            "tickets": {
                "description": "Present when CONFIRMED.",
                "type": "array",
                "items": {"$ref": "#/components/schemas/Ticket"},
            },
            "failure_reason": {"type": "string", "description": "Present when PAYMENT_FAILED."},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "trace_id"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "trace_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        },
    },
    "FieldError": {
        "type": "object",
        "required": ["field", "message"],
        "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
    },
    "ValidationProblem": {
        "allOf": [
            {"$ref": "#/components/schemas/Problem"},
            {
                "type": "object",
                "properties": {
                    "errors": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/FieldError"},
                    }
                },
            },
        ]
    },
}

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
            "parameters": [
                {
                    "name": "date",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "format": "date"},
                },
                {
                    "name": "origin",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": MAX_PLACE_LENGTH},
                },
                {
                    "name": "destination",
                    "in": "query",
                    "schema": {"type": "string", "maxLength": MAX_PLACE_LENGTH},
                },
            ],
            "responses": {
                "200": _json("Matching trips.", "TripList"),
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
            },
        }
    },
    "/orders/{order_id}": {
        "get": {
            "operationId": "getOrder",
            "summary": "An order's current state.",
            "parameters": [{"name": "order_id", "in": "path", "required": True, "schema": _UUID}],
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
                    "maxLength": MAX_KEY_LENGTH,
                    "pattern": "^[\\x20-\\x7E]+$",
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

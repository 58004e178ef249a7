"""The OpenAPI document lists maintenance mode's answer to POST /orders, as the gateway gives it."""

from __future__ import annotations

from typing import Any

from safiri_gateway.entrypoints.openapi import OPENAPI
from safiri_gateway.public.models import MAINTENANCE_PROBLEM_KIND, MAINTENANCE_PROBLEM_TYPE
from safiri_web import Problem, problem_response


def _deref(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = OPENAPI
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def test_place_orders_503_is_maintenance_too_with_retry_after() -> None:
    unavailable = _deref(OPENAPI["paths"]["/orders"]["post"]["responses"]["503"])
    assert MAINTENANCE_PROBLEM_TYPE in unavailable["description"]
    assert "maintenance-mode" in unavailable["description"]
    retry_after = unavailable["headers"]["Retry-After"]
    assert retry_after["schema"] == {"type": "integer", "minimum": 1}
    assert retry_after.get("required", False) is False  # ticketing's own 503 has none
    assert list(unavailable["content"]) == ["application/problem+json"]


def test_reads_are_not_documented_as_refused_for_maintenance() -> None:
    for path in ("/trips", "/orders/{order_id}"):
        unavailable = _deref(OPENAPI["paths"][path]["get"]["responses"]["503"])
        assert "maintenance" not in unavailable["description"].lower(), path
        assert "Retry-After" not in unavailable["headers"], path


def test_the_documented_type_is_the_one_the_gateway_answers_with() -> None:
    response = problem_response(Problem(503, MAINTENANCE_PROBLEM_KIND, "Down for maintenance"))
    assert response.text is not None
    assert f'"type": "{MAINTENANCE_PROBLEM_TYPE}"' in response.text

"""The OpenAPI document is structurally OpenAPI 3.1 and describes the public contract."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from safiri_gateway.domain.orders import MAX_SEATS_PER_ORDER, normalise_phone
from safiri_gateway.entrypoints.openapi import OPENAPI

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used: {ref}"
    node: Any = OPENAPI
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), ref
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def deref(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"])
    return node


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_it_is_an_openapi_3_1_document() -> None:
    assert re.fullmatch(r"3\.1\.\d+", OPENAPI["openapi"])
    assert OPENAPI["info"]["title"]
    assert OPENAPI["info"]["version"]
    json.dumps(OPENAPI)  # served as JSON, so it must be plain data


def test_every_reference_resolves() -> None:
    found = list(refs(OPENAPI))
    assert found
    for ref in found:
        resolve(ref)


def test_every_operation_has_responses_with_valid_codes() -> None:
    ids = []
    for path, method, operation in operations():
        assert path.startswith("/")
        assert operation["responses"], f"{method} {path} has no responses"
        for code, response in operation["responses"].items():
            assert re.fullmatch(r"[1-5](\d\d|XX)|default", code), code
            assert deref(response)["description"]
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids))


def test_path_templates_are_declared_parameters() -> None:
    for path, _, operation in operations():
        declared = {
            p["name"] for p in map(deref, operation.get("parameters", [])) if p["in"] == "path"
        }
        assert set(re.findall(r"{(\w+)}", path)) == declared, path
        for parameter in map(deref, operation.get("parameters", [])):
            if parameter["in"] == "path":
                assert parameter["required"] is True


def test_it_describes_the_three_public_operations() -> None:
    assert OPENAPI["servers"] == [{"url": "/api/v1"}]
    described = {(method, path) for path, method, _ in operations()}
    assert {("get", "/trips"), ("post", "/orders"), ("get", "/orders/{order_id}")} <= described


def test_clients_authenticate_with_a_bearer_key() -> None:
    schemes = OPENAPI["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    for requirement in OPENAPI["security"]:
        assert set(requirement) <= set(schemes)
    assert OPENAPI["paths"]["/openapi.json"]["get"]["security"] == []
    for path, method, operation in operations():
        if path != "/openapi.json":
            assert "401" in operation["responses"], f"{method} {path}"


def test_placing_an_order_needs_an_idempotency_key() -> None:
    operation = OPENAPI["paths"]["/orders"]["post"]
    headers = [deref(p) for p in operation["parameters"] if deref(p)["in"] == "header"]
    assert [(h["name"], h["required"]) for h in headers] == [("Idempotency-Key", True)]
    assert headers[0]["schema"]["maxLength"] == 255
    accepted = deref(operation["responses"]["202"])
    assert "Location" in accepted["headers"]
    assert "Idempotent-Replayed" in accepted["headers"]


@pytest.mark.parametrize(("path", "method", "operation"), list(operations()))
def test_every_error_is_problem_json_with_a_trace_id(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    for code, response in operation["responses"].items():
        if code.startswith(("4", "5")):
            content = deref(response)["content"]
            assert list(content) == ["application/problem+json"], f"{method} {path} {code}"
            schema = deref(content["application/problem+json"]["schema"])
            schema = deref(schema["allOf"][0]) if "allOf" in schema else schema
            assert "trace_id" in schema["required"]


def test_links_lead_from_a_found_trip_to_its_order_and_on_to_reading_it() -> None:
    search = OPENAPI["paths"]["/trips"]["get"]["responses"]["200"]["links"]
    (to_order,) = search.values()
    assert to_order["operationId"] == "placeOrder"
    assert to_order["requestBody"] == {"trip_id": "$response.body#/trips/0/trip_id"}
    accepted = OPENAPI["paths"]["/orders"]["post"]["responses"]["202"]["links"]
    (to_read,) = accepted.values()
    assert to_read["operationId"] == "getOrder"
    assert to_read["parameters"] == {"path.order_id": "$response.body#/order_id"}


def test_an_order_request_is_documented_with_the_rules_the_gateway_checks() -> None:
    schema = OPENAPI["components"]["schemas"]["OrderRequest"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"trip_id", "seat_count", "phone"}
    seat_count = schema["properties"]["seat_count"]
    assert (seat_count["minimum"], seat_count["maximum"]) == (1, MAX_SEATS_PER_ORDER)
    for good in ("254712345678", "+254712345678", "0712345678", "0110345678"):
        assert re.search(schema["properties"]["phone"]["pattern"], good)
        assert normalise_phone(good) is not None
    for bad in ("254812345678", "25471234567", "0712345678 "):
        assert not re.search(schema["properties"]["phone"]["pattern"], bad)
        assert normalise_phone(bad) is None

"""Fuzzing an internal HTTP API from the request models its handlers validate with.

The models' JSON Schemas become an OpenAPI document; schemathesis generates valid and invalid
requests from it (hypothesis, derandomized), and each answer is judged by the caller's check.
Hand-made mutations that a schema cannot describe (bytes that are not JSON, deep nesting,
oversize bodies, undecodable headers) go through ``send_raw``.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisDeprecationWarning
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from schemathesis import Case, GenerationMode, Response

__all__ = [
    "Answer",
    "Operation",
    "fuzz",
    "metric_samples",
    "openapi_document",
    "problem_json_fault",
    "send_raw",
    "server_errors",
]

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Operation:
    """One route: its models (body, query, headers) and the JSON Schemas of its path's parts."""

    method: str
    path: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    path_params: Mapping[str, dict[str, Any]] = field(default_factory=dict)


def _model_schema(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def _parameters(model: type[BaseModel], where: str, defs: dict[str, Any]) -> list[dict[str, Any]]:
    schema = _model_schema(model, defs)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": where, "required": name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


def openapi_document(title: str, operations: list[Operation]) -> dict[str, Any]:
    """An OpenAPI 3.1 document of ``operations``, every schema taken from a model."""
    defs: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in op.path_params.items()
        ]
        if op.query is not None:
            parameters += _parameters(op.query, "query", defs)
        if op.headers is not None:
            parameters += _parameters(op.headers, "header", defs)
        spec: dict[str, Any] = {
            "parameters": parameters,
            "responses": {"default": {"description": "any answer; the test judges it"}},
        }
        if op.body is not None:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _model_schema(op.body, defs)}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = spec
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "fuzz"},
        "paths": paths,
        "components": {"schemas": defs},
    }


Check = Callable[[Case[Any], Response], str | None]
Prepare = Callable[[Case[Any], st.DataObject], None]


def _fuzz(
    document: dict[str, Any], base_url: str, examples: int, check: Check, prepare: Prepare | None
) -> tuple[int, list[str]]:
    schema = schemathesis.openapi.from_dict(document)
    cases = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )
    sent: list[str] = []
    faults: list[str] = []
    session = requests.Session()

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases, data=st.data())
    def run(case: Case[Any], data: st.DataObject) -> None:
        if prepare is not None:
            prepare(case, data)
        response = case.call(base_url=base_url, session=session, timeout=10)
        sent.append(f"{case.method} {case.path}")
        fault = check(case, response)
        if fault is not None:
            faults.append(f"{fault}: {case.as_curl_command()}")

    try:
        with warnings.catch_warnings():
            # The app under test runs in this process's event loop, on another thread; with a
            # tracer provider installed (by an earlier test of the session) its OpenTelemetry
            # SDK draws span ids from the global `random` while hypothesis generates here, and
            # hypothesis takes that for a strategy using `random` (a deprecation, an error
            # under filterwarnings=error, then a FlakyFailure). The strategies here do not.
            warnings.filterwarnings(
                "ignore",
                message="Do not use the `random` module inside strategies",
                category=HypothesisDeprecationWarning,
            )
            run()
    finally:
        session.close()
    return len(sent), faults


async def fuzz(
    document: dict[str, Any],
    base_url: str,
    *,
    examples: int,
    check: Check,
    prepare: Prepare | None = None,
) -> tuple[int, list[str]]:
    """Send ``examples`` generated requests (from a thread: schemathesis calls block); the
    number sent and every fault ``check`` found."""
    return await asyncio.to_thread(_fuzz, document, base_url, examples, check, prepare)


def problem_json_fault(status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with a service's answer: a 5xx, or a 4xx that is not problem+json."""
    if status >= 500:
        return f"server error {status} {body[:200]!r}"
    if status < 400:
        return None
    if content_type.split(";")[0].strip() != PROBLEM:
        return f"{status} answered as {content_type!r}"
    try:
        problem = json.loads(body)
    except ValueError:
        return f"{status} problem that is not JSON: {body[:200]!r}"
    if problem.get("status") != status or "trace_id" not in problem or "type" not in problem:
        return f"{status} problem without status/type/trace_id: {problem!r}"
    return None


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


async def send_raw(base_url: str, head: bytes, body: bytes = b"") -> Answer:
    """One HTTP/1.1 request written byte for byte (``head``: the request line and any headers
    but Host and Content-Length), so what no client library would send can be sent."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            head.rstrip(b"\r\n")
            + b"\r\nHost: fuzz\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    header_block, _, content = raw.partition(b"\r\n\r\n")
    lines = header_block.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    return Answer(status, content_type, content)


def metric_samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample called ``name`` in a Prometheus exposition, by its labels."""
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def server_errors(metrics_text: str) -> float:
    """How many requests the service answered with a 5xx, by its own server histogram."""
    counts = metric_samples(metrics_text, "http_server_request_duration_seconds_count")
    return sum(
        value
        for labels, value in counts.items()
        if dict(labels).get("http_response_status_code", "").startswith("5")
    )

"""The messages of real purchases, captured from the broker, against docs/asyncapi.yaml.

A queue of the test's own is bound to the events exchange with ``#`` while two purchases run
(one paid, one refused by the provider); every message about them is checked against the
AsyncAPI document (not the pydantic models that made it): its channel, its payload's JSON
Schema, its trace-context headers and its AMQP properties.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import jsonschema
import pytest
import yaml
from aio_pika.abc import AbstractIncomingMessage

from tests.conftest import eventually

from .conftest import Running

pytestmark = pytest.mark.e2e

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"


def contract_errors(doc: dict[str, Any], message: AbstractIncomingMessage) -> list[str]:
    """Why ``message`` does not conform to the document's contract for its routing key."""
    by_name = {m["name"]: m for m in doc["components"]["messages"].values()}
    contract = by_name.get(message.routing_key or "")
    if contract is None:
        return [f"routing key {message.routing_key!r} is not in the document"]
    errors: list[str] = []
    schema = doc["components"]["schemas"][contract["title"]]
    body = json.loads(message.body)
    errors += [f"payload {list(e.path)}: {e.message}" for e in _errors(schema, body)]
    headers = {k: v for k, v in (message.headers or {}).items() if isinstance(v, str)}
    errors += [
        f"headers {list(e.path)}: {e.message}" for e in _errors(contract["headers"], headers)
    ]
    if message.content_type != contract["contentType"]:
        errors.append(f"content type {message.content_type!r}")
    if message.type != contract["bindings"]["amqp"]["messageType"]:
        errors.append(f"AMQP type {message.type!r}")
    if not message.message_id:
        errors.append("no message_id")
    return errors


def _errors(schema: dict[str, Any], instance: object) -> list[jsonschema.ValidationError]:
    return list(jsonschema.Draft202012Validator(schema).iter_errors(instance))


async def test_every_message_of_a_real_purchase_conforms_to_the_asyncapi_document(
    running: Running,
) -> None:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    connection = await aio_pika.connect(running.config.amqp_url)
    async with connection:
        channel = await connection.channel()
        binding = doc["channels"]["paymentRequested"]["bindings"]["amqp"]
        exchange = await channel.get_exchange(binding["exchange"]["name"])
        capture = await channel.declare_queue(
            f"it-capture-{uuid.uuid4().hex[:8]}", exclusive=True, auto_delete=True
        )
        await capture.bind(exchange, routing_key="#")

        trip = await running.next_trip("Nairobi", "Mombasa")
        orders = {}
        for phone in ("254712345678", "254700000001"):  # paid; insufficient funds
            status, order, _ = await running.place_order(trip["trip_id"], phone=phone)
            assert status == 202, order
            orders[order["order_id"]] = (await running.final_order(order["order_id"]))["status"]
        assert sorted(orders.values()) == ["CONFIRMED", "PAYMENT_FAILED"]

        captured: list[AbstractIncomingMessage] = []

        async def all_four() -> bool:
            while (message := await capture.get(fail=False, no_ack=True)) is not None:
                if json.loads(message.body).get("order_id") in orders:
                    captured.append(message)
            return len(captured) >= 4

        await eventually(all_four, what="the four messages of the two purchases")

    keys = sorted(m.routing_key or "" for m in captured)
    assert keys == ["payment.failed", "payment.requested", "payment.requested", "payment.succeeded"]
    assert {m.message_id: contract_errors(doc, m) for m in captured} == {
        m.message_id: [] for m in captured
    }


def test_the_check_refuses_a_message_that_breaks_the_document() -> None:
    """The same check, handed bodies and headers that break the contract, finds each."""
    doc = yaml.safe_load(ASYNCAPI.read_text())
    good = {
        "schema_version": 1,
        "order_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "trip_id": "t-1",
        "amount": 1500,
        "currency": "KES",
        "phone": "254712345678",
        "description": "Nairobi-Mombasa x1",
    }
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    def delivered(body: dict[str, Any], **headers: str) -> AbstractIncomingMessage:
        message = aio_pika.Message(
            json.dumps(body).encode(),
            headers=headers,
            message_id="m",
            type="payment.requested",
            content_type="application/json",
        )
        return _Delivered(message, "payment.requested")  # type: ignore[return-value]

    assert contract_errors(doc, delivered(good, traceparent=traceparent)) == []
    assert contract_errors(doc, delivered(good))  # no trace context
    assert contract_errors(doc, delivered({**good, "amount": "1500"}, traceparent=traceparent))
    assert contract_errors(doc, delivered({**good, "phone": "x"}, traceparent=traceparent))
    del good["order_id"]
    assert contract_errors(doc, delivered(good, traceparent=traceparent))


class _Delivered:
    """The fields of a delivery ``contract_errors`` reads, for a message built in the test."""

    def __init__(self, message: aio_pika.Message, routing_key: str) -> None:
        self.body = message.body
        self.headers = message.headers
        self.content_type = message.content_type
        self.type = message.type
        self.message_id = message.message_id
        self.routing_key = routing_key

"""The services' AMQP consumers fuzzed from their own contracts, through the real broker.

Bodies are drawn from the contracts' own examples with fields retyped, removed or added, plus
schema-valid results about orders that do not exist, and published to the events exchange
beside the services' traffic. Every one must end in its queue's dead-letter queue with a
reason, none may be requeued (a handler failure that would loop and, past the delivery limit,
dead-letter without a reason), and the purchase path must go on working.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue

from safiri_contracts import (
    DEAD_LETTER_REASON_HEADER,
    EVENTS_EXCHANGE,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
)
from tests.conftest import eventually

from .conftest import Running

pytestmark = pytest.mark.e2e

JUNK: list[Any] = [None, True, -1, 0, 2**40, 1.5, "", "x" * 600, "\u0000", [], {}, {"a": [1]}]


def payment_request() -> dict[str, Any]:
    return PaymentRequested(
        order_id=str(uuid.uuid4()),
        trip_id=str(uuid.uuid4()),
        amount=1500,
        currency="KES",
        phone="254712345678",
        description="Nairobi-Mombasa x1",
    ).to_payload()


def payment_result(succeeded: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "order_id": str(uuid.uuid4()),  # an order ticketing never had
        "payment_id": str(uuid.uuid4()),
        "amount": 1500,
        "currency": "KES",
        "result_desc": "fuzz",
        "receipt": "RCPT0001" if succeeded else None,
    }
    if succeeded:
        return PaymentSucceeded(**fields).to_payload()
    return PaymentFailed(result_code=1, **fields).to_payload()


def mutated(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``body`` with one to three fields retyped, removed or added; never still valid for a
    payment request (at least one required field broken)."""
    body = dict(body)
    key = rng.choice(["order_id", "amount", "currency", "phone"])  # no junk value is valid
    body[key] = rng.choice([j for j in JUNK if j != body.get(key)])
    for _ in range(rng.randint(0, 2)):
        other = rng.choice([*body, "schema_version", "extra"])
        if rng.random() < 0.3:
            body.pop(other, None)
        else:
            body[other] = rng.choice(JUNK)
    return body


def bodies(seed: int) -> list[tuple[str, str, bytes]]:
    """(routing key, queue, body) for each message: invalid requests; valid and invalid
    results about unknown orders."""
    rng = random.Random(seed)
    out: list[tuple[str, str, bytes]] = []
    for _ in range(20):
        out.append(
            (
                PaymentRequested.routing_key,
                PAYMENT_REQUESTS.name,
                json.dumps(mutated(payment_request(), rng)).encode(),
            )
        )
    for n in range(20):
        message = PaymentSucceeded if n % 2 else PaymentFailed
        body = payment_result(message is PaymentSucceeded)
        if n % 4 >= 2:  # half of them broken too
            body[rng.choice(list(body))] = rng.choice(JUNK)
        out.append((message.routing_key, PAYMENT_RESULTS.name, json.dumps(body).encode()))
    return out


async def test_fuzzed_messages_are_dead_lettered_with_reasons_and_never_requeued(
    running: Running,
) -> None:
    marker = uuid.uuid4().hex
    sent = bodies(seed=20261207)
    # The outbox gives every message a UUID id (the inbox keys on it); every tenth here has
    # another id, which must be refused with its reason too, not retried.
    ids = [
        f"fuzz-{marker}-{n}"
        if n % 10 == 9
        else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{marker}-{n}"))
        for n in range(len(sent))
    ]
    retried_before = {
        service: await running.metric(
            service, "messaging_client_consumed_messages_total", outcome="retried"
        )
        for service in ("ticketing", "payment")
    }
    connection = await aio_pika.connect(running.config.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EVENTS_EXCHANGE)
        for n, (key, _, body) in enumerate(sent):
            await exchange.publish(
                aio_pika.Message(body, message_id=ids[n]),
                routing_key=key,
                mandatory=True,
            )
        dlqs = {
            name: await channel.declare_queue(f"{name}.dlq", passive=True)
            for name in (PAYMENT_REQUESTS.name, PAYMENT_RESULTS.name)
        }
        parked: dict[str, tuple[str, str]] = {}

        async def take(queue: str, dlq: AbstractQueue) -> None:
            while (message := await dlq.get(fail=False)) is not None:
                await message.ack()
                mid = message.message_id or ""
                if mid in ids:
                    reason = str((message.headers or {}).get(DEAD_LETTER_REASON_HEADER, ""))
                    parked[mid] = (queue, reason)

        async def all_parked() -> bool:
            for queue, dlq in dlqs.items():
                await take(queue, dlq)
            return len(parked) == len(sent)

        await eventually(all_parked, timeout=30, what=f"{len(sent)} fuzzed messages parked")

    for n, (_, queue, body) in enumerate(sent):
        where, reason = parked[ids[n]]
        assert where == queue, body
        assert reason, f"dead-lettered without a reason: {body!r}"
    unknown = [r for q, r in parked.values() if "unknown order" in r]
    assert len(unknown) >= 5  # schema-valid results reached the handler and were refused there
    # A valid result (n = 29: a success about an unknown order) under an id that is no UUID.
    assert "is not a UUID" in parked[ids[29]][1], parked[ids[29]]
    for service, before in retried_before.items():
        after = await running.metric(
            service, "messaging_client_consumed_messages_total", outcome="retried"
        )
        assert after == before, f"{service} requeued a fuzzed message"

    trip = await running.next_trip("Mombasa", "Nairobi")
    status, order, _ = await running.place_order(trip["trip_id"])
    assert status == 202
    assert (await running.final_order(order["order_id"]))["status"] == "CONFIRMED"
